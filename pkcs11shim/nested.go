package pkcs11shim

/*
#include <stdlib.h>
#include <string.h>

// kw_attribute is CK_ATTRIBUTE as PKCS#11 lays it out on Unix (CK_ULONG is
// unsigned long, no packing): the element type of an attribute-array
// attribute such as CKA_UNWRAP_TEMPLATE.
typedef struct {
	unsigned long type;
	void *pValue;
	unsigned long ulValueLen;
} kw_attribute;
*/
import "C"

import (
	"unsafe"

	"github.com/miekg/pkcs11"
)

// nestedTemplate encodes attrs as the value of an attribute-array attribute
// (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE: an array of CK_ATTRIBUTE, PKCS#11
// v2.40 §4.8), which miekg/pkcs11 cannot express: the array holds pointers
// to each value, so the values are copied into C memory that stays valid
// until free is called, after the PKCS#11 call that uses the attribute.
// The array itself is returned as bytes (miekg copies an attribute's value
// into C memory of its own for the call).
func nestedTemplate(attrs []*pkcs11.Attribute) (value []byte, free func()) {
	n := len(attrs)
	if n == 0 {
		return nil, func() {}
	}
	size := C.size_t(n) * C.size_t(unsafe.Sizeof(C.kw_attribute{}))
	arr := (*[1 << 20]C.kw_attribute)(C.calloc(1, size))[:n:n]
	var bufs []unsafe.Pointer
	for i, a := range attrs {
		arr[i]._type = C.ulong(a.Type)
		if len(a.Value) > 0 {
			p := C.CBytes(a.Value)
			bufs = append(bufs, p)
			arr[i].pValue = p
			arr[i].ulValueLen = C.ulong(len(a.Value))
		}
	}
	value = C.GoBytes(unsafe.Pointer(&arr[0]), C.int(size))
	return value, func() {
		for _, p := range bufs {
			C.free(p)
		}
		C.free(unsafe.Pointer(&arr[0]))
	}
}
