// Referee for token/smcrypto's SM2 interop test (sm2_interop_test.go):
// decrypts and encrypts a batch of SM2 messages with the npm package
// sm-crypto in one process.
//
//   node referee.js batch.json
//
// batch.json: {"decrypt": [{"d": hex scalar, "ct": hex C1‖C3‖C2}],
//              "encrypt": [{"pub": hex 04‖x‖y, "pt": hex}]}
// Ciphertexts are sm-crypto's cipherMode 1 (C1C3C2) hex, whose C1 is x‖y
// without the 0x04 prefix. Prints {"version", "decrypt": [hex plaintext or
// null when sm-crypto refuses], "encrypt": [hex ciphertext]}.
'use strict'
const fs = require('fs')
const {sm2} = require('sm-crypto')
const version = require('sm-crypto/package.json').version

const hexToBytes = (h) => Array.from(Buffer.from(h, 'hex'))
const batch = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))

const decrypt = (batch.decrypt || []).map(({d, ct}) => {
  const m = sm2.doDecrypt(ct, d, 1, {output: 'array'})
  return m.length === 0 ? null : Buffer.from(m).toString('hex')
})
const encrypt = (batch.encrypt || []).map(({pub, pt}) => sm2.doEncrypt(hexToBytes(pt), pub, 1))

process.stdout.write(JSON.stringify({version, decrypt, encrypt}))
