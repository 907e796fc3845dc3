/*
 * sm2batch: many SM2 encryptions and decryptions with the system's OpenSSL
 * libcrypto (EVP_PKEY_encrypt / EVP_PKEY_decrypt, the calls behind
 * "openssl pkeyutl -encrypt/-decrypt") in one process, for the interop test
 * of token/smcrypto (sm2_interop_test.go). One process per ciphertext with
 * the openssl command costs ~20 ms; this costs well under 1 ms.
 *
 * Reads lines from stdin, answers one line per request on stdout:
 *   D <private key PEM file> <ciphertext hex>  ->  OK <plaintext hex> | ERR <reason>
 *   E <public key PEM file> <plaintext hex>    ->  OK <ciphertext hex> | ERR <reason>
 * Ciphertexts are DER SM2Cipher (GM/T 0009), as pkeyutl reads and writes.
 * Build: cc -O2 -o sm2batch sm2batch.c -lcrypto
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static EVP_PKEY *cached;
static char cached_path[4096];
static char cached_kind;

static EVP_PKEY *load(char kind, const char *path)
{
    FILE *f;

    if (cached != NULL && cached_kind == kind && strcmp(cached_path, path) == 0)
        return cached;
    EVP_PKEY_free(cached);
    cached = NULL;
    if (strlen(path) >= sizeof(cached_path) || (f = fopen(path, "r")) == NULL)
        return NULL;
    cached = kind == 'D' ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
                         : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (cached != NULL) {
        strcpy(cached_path, path);
        cached_kind = kind;
    }
    return cached;
}

static int unhex(const char *s, unsigned char *out, size_t *n)
{
    size_t len = strlen(s), i;

    if (len % 2 != 0)
        return 0;
    for (i = 0; i < len / 2; i++) {
        unsigned int v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return 0;
        out[i] = (unsigned char)v;
    }
    *n = len / 2;
    return 1;
}

static void answer_err(void)
{
    unsigned long e = ERR_get_error();
    char buf[256];

    ERR_error_string_n(e, buf, sizeof(buf));
    printf("ERR %s\n", e != 0 ? buf : "unknown");
    ERR_clear_error();
}

int main(void)
{
    static char line[1 << 16];
    static unsigned char in[1 << 15], out[1 << 15];

    while (fgets(line, sizeof(line), stdin) != NULL) {
        char kind, path[4096], data[1 << 16];
        size_t inlen, outlen = sizeof(out), i;
        EVP_PKEY *key;
        EVP_PKEY_CTX *ctx;
        int ok;

        if (sscanf(line, "%c %4095s %65535s", &kind, path, data) != 3
                || (kind != 'D' && kind != 'E') || !unhex(data, in, &inlen)) {
            printf("ERR bad request line\n");
            continue;
        }
        if ((key = load(kind, path)) == NULL) {
            answer_err();
            continue;
        }
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
        if (kind == 'D')
            ok = ctx != NULL && EVP_PKEY_decrypt_init(ctx) > 0
                 && EVP_PKEY_decrypt(ctx, out, &outlen, in, inlen) > 0;
        else
            ok = ctx != NULL && EVP_PKEY_encrypt_init(ctx) > 0
                 && EVP_PKEY_encrypt(ctx, out, &outlen, in, inlen) > 0;
        EVP_PKEY_CTX_free(ctx);
        if (!ok) {
            answer_err();
            continue;
        }
        printf("OK ");
        for (i = 0; i < outlen; i++)
            printf("%02x", out[i]);
        printf("\n");
    }
    EVP_PKEY_free(cached);
    return 0;
}
