"""SM2 signatures and SM3 digests (GB/T 32918, GB/T 32905) through OpenSSL 3's libcrypto.

What it offers: :func:`sm3` (digest), :class:`SM2PrivateKey` (generate, sign,
PEM PKCS#8 load/save, optionally passphrase-encrypted) and
:class:`SM2PublicKey` (verify, PEM / DER SubjectPublicKeyInfo load/save).
Signatures use SM3 and the distinguishing ID ``1234567812345678`` of GM/T 0009
(:data:`DEFAULT_ID`) and are DER ``SEQUENCE{INTEGER r, INTEGER s}`` as
STANDARDS.md §4 requires; :func:`der_to_raw` / :func:`raw_to_der` convert to and
from the fixed 64-byte ``r||s`` form that some GM/T 0031 (v1) seals and some
HSM APIs (GM/T 0018) use. :class:`Sm2Signer` is the one-method protocol a key
store implements (an in-memory key here; an HSM later).

Why libcrypto through ``cffi`` (ABI mode): ``cryptography`` has SM3 but no SM2;
``gmssl`` is pure Python (~160 signatures/s, far below the 2,000/s per core of
issue 10); ``gmssl-pyx`` and ``tongsuopy`` bundle their own C library
(a second crypto stack to patch); ``gmalg`` is little used. The system OpenSSL
3 already implements SM2/SM3, is patched by the distribution, is the same code
as the ``openssl`` CLI that serves as the independent verifier in the tests,
and ``cffi`` is already installed (a dependency of ``cryptography``). ABI mode
needs no compiler at install time. The cost of a call is a few microseconds,
small beside the ~0.4 ms of an SM2 scalar multiplication.

Call sequence (OpenSSL 3.0, see ``EVP_PKEY-SM2(7)``): create an
``EVP_PKEY_CTX`` from the key, set the ID on it with ``EVP_PKEY_CTX_set1_id``,
attach it to a fresh ``EVP_MD_CTX`` with ``EVP_MD_CTX_set_pkey_ctx``, then
``EVP_DigestSignInit`` / ``EVP_DigestVerifyInit`` with SM3 and one-shot
``EVP_DigestSign`` / ``EVP_DigestVerify``. The ID must be set before the init,
because the provider computes ``Z = SM3(ENTL||ID||a||b||G||P)`` on the first update.

Threads: key objects (``EVP_PKEY``) are immutable after creation and OpenSSL 3
allows sharing them between threads; every sign/verify creates and frees its
own contexts, so nothing mutable is shared. The SM3 ``EVP_MD`` is fetched once
(fetched algorithms are reference-counted and thread-safe). The OpenSSL error
queue is per thread.

Errors: a missing libcrypto, one without SM2/SM3, or a failing libcrypto call
raise :class:`signing.errors.CryptoLibraryError` carrying the OpenSSL error
strings; an unreadable key or wrong passphrase raises
:class:`signing.errors.KeyAccessError`. An invalid signature is not an error:
``verify`` returns ``False``. This module never logs and never puts key
material in messages.
"""

from __future__ import annotations

import ctypes.util
import os
import threading
import time
from typing import Any, Protocol

from signing.errors import CryptoLibraryError, KeyAccessError

DEFAULT_ID = b"1234567812345678"
"""The SM2 distinguishing ID of GM/T 0009 used when none is agreed."""

OID_SM2 = "1.2.156.10197.1.301"
"""The SM2 curve (``sm2p256v1``), the EC parameters in an SM2 SubjectPublicKeyInfo."""

OID_SM3 = "1.2.156.10197.1.401"
OID_SM3_WITH_SM2 = "1.2.156.10197.1.501"

_LIBCRYPTO_ENV = "EHUB_LIBCRYPTO"
_LIBCRYPTO_DEFAULT = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"

_CDEF = """
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_md_st EVP_MD;
typedef struct evp_cipher_st EVP_CIPHER;
typedef struct bio_st BIO;
typedef struct bio_method_st BIO_METHOD;
typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;

unsigned long OpenSSL_version_num(void);
unsigned long ERR_get_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);
void ERR_clear_error(void);

EVP_MD *EVP_MD_fetch(OSSL_LIB_CTX *ctx, const char *algorithm, const char *properties);
EVP_CIPHER *EVP_CIPHER_fetch(OSSL_LIB_CTX *ctx, const char *algorithm, const char *properties);
int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
               const EVP_MD *type, void *impl);

EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_name(OSSL_LIB_CTX *libctx, const char *name,
                                         const char *propquery);
EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey,
                                         const char *propquery);
void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx);
int EVP_PKEY_keygen_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_keygen(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey);
int EVP_PKEY_CTX_set1_id(EVP_PKEY_CTX *ctx, const void *id, int len);
void EVP_PKEY_free(EVP_PKEY *pkey);
int EVP_PKEY_is_a(const EVP_PKEY *pkey, const char *name);
int EVP_PKEY_up_ref(EVP_PKEY *key);

EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
void EVP_MD_CTX_set_pkey_ctx(EVP_MD_CTX *ctx, EVP_PKEY_CTX *pctx);
int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                       void *e, EVP_PKEY *pkey);
int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen,
                   const unsigned char *tbs, size_t tbslen);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                         void *e, EVP_PKEY *pkey);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sigret, size_t siglen,
                     const unsigned char *tbs, size_t tbslen);

const BIO_METHOD *BIO_s_mem(void);
BIO *BIO_new(const BIO_METHOD *type);
BIO *BIO_new_mem_buf(const void *buf, int len);
long BIO_ctrl(BIO *bp, int cmd, long larg, void *parg);
int BIO_free(BIO *a);

EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, void *cb, void *u);
EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);
int PEM_write_bio_PKCS8PrivateKey(BIO *bp, const EVP_PKEY *x, const EVP_CIPHER *enc,
                                  const char *kstr, int klen, void *cb, void *u);
int PEM_write_bio_PUBKEY(BIO *bp, const EVP_PKEY *x);
int i2d_PUBKEY(const EVP_PKEY *a, unsigned char **pp);
EVP_PKEY *d2i_PUBKEY(EVP_PKEY **a, const unsigned char **pp, long length);
"""

_BIO_CTRL_INFO = 3  # BIO_get_mem_data() is a macro over BIO_ctrl(b, BIO_CTRL_INFO, 0, pp)
_MAX_SIG_LEN = 80  # DER SEQUENCE of two INTEGERs of at most 33 bytes each


class _Lib:
    """The loaded libcrypto: the cffi handle, its FFI and the fetched SM3."""

    def __init__(self, ffi: Any, lib: Any, sm3_md: Any) -> None:
        self.ffi = ffi
        self.lib = lib
        self.sm3_md = sm3_md


_lib_lock = threading.Lock()
_loaded: _Lib | None = None


def _library_path() -> str:
    configured = os.environ.get(_LIBCRYPTO_ENV)
    if configured:
        return configured
    if os.path.exists(_LIBCRYPTO_DEFAULT):
        return _LIBCRYPTO_DEFAULT
    return ctypes.util.find_library("crypto") or "libcrypto.so.3"


def _load() -> _Lib:
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lib_lock:
        if _loaded is not None:
            return _loaded
        try:
            import cffi
        except ImportError as exc:  # pragma: no cover - cffi comes with cryptography
            raise CryptoLibraryError("cffi is not installed; SM2 needs it", call="import") from exc
        ffi = cffi.FFI()
        ffi.cdef(_CDEF)
        path = _library_path()
        try:
            lib = ffi.dlopen(path)
            version = int(lib.OpenSSL_version_num())
        except (OSError, AttributeError) as exc:
            raise CryptoLibraryError(
                f"cannot load OpenSSL 3 libcrypto from {path!r} (set {_LIBCRYPTO_ENV} "
                "to the path of libcrypto.so.3)",
                call="dlopen",
            ) from exc
        if version < 0x30000000:
            raise CryptoLibraryError(
                f"{path!r} is OpenSSL {version:#x}; SM2 through EVP needs OpenSSL 3",
                call="OpenSSL_version_num",
            )
        sm3_md = lib.EVP_MD_fetch(ffi.NULL, b"SM3", ffi.NULL)
        probe = lib.EVP_PKEY_CTX_new_from_name(ffi.NULL, b"SM2", ffi.NULL)
        if sm3_md == ffi.NULL or probe == ffi.NULL:
            reasons = _drain_errors(ffi, lib)
            raise CryptoLibraryError(
                f"libcrypto at {path!r} lacks SM2 or SM3 (built with no-sm2/no-sm3, "
                "or a FIPS-only provider configuration)",
                call="EVP_MD_fetch/EVP_PKEY_CTX_new_from_name",
                reasons=reasons,
            )
        lib.EVP_PKEY_CTX_free(probe)
        _loaded = _Lib(ffi, lib, sm3_md)
        return _loaded


def _drain_errors(ffi: Any, lib: Any) -> tuple[str, ...]:
    reasons: list[str] = []
    buf = ffi.new("char[256]")
    while True:
        code = lib.ERR_get_error()
        if code == 0:
            return tuple(reasons)
        lib.ERR_error_string_n(code, buf, 256)
        reasons.append(ffi.string(buf).decode("ascii", "replace"))


def _fail(call: str, message: str | None = None) -> CryptoLibraryError:
    lib = _load()
    reasons = _drain_errors(lib.ffi, lib.lib)
    return CryptoLibraryError(message or f"libcrypto {call} failed", call=call, reasons=reasons)


def libcrypto_available() -> bool:
    """Whether an OpenSSL 3 libcrypto with SM2 and SM3 can be loaded."""
    try:
        _load()
    except CryptoLibraryError:
        return False
    return True


def sm3(data: bytes) -> bytes:
    """The 32-byte SM3 digest of ``data``."""
    lib = _load()
    out = lib.ffi.new("unsigned char[32]")
    size = lib.ffi.new("unsigned int *")
    if lib.lib.EVP_Digest(data, len(data), out, size, lib.sm3_md, lib.ffi.NULL) != 1:
        raise _fail("EVP_Digest")
    return bytes(lib.ffi.buffer(out, size[0]))


class Sm2Signer(Protocol):
    """Anything that makes SM2-with-SM3 signatures (default ID, DER ``r,s``)."""

    def sign(self, data: bytes) -> bytes:
        """The DER SM2 signature of ``data`` (hashed with SM3 and the Z prefix)."""
        ...

    def public_key(self) -> SM2PublicKey:
        """The public half, e.g. to put into a certificate."""
        ...


def _owned_pkey(pkey: Any) -> Any:
    lib = _load()
    return lib.ffi.gc(pkey, lib.lib.EVP_PKEY_free)


def _check_sm2(pkey: Any, what: str) -> None:
    lib = _load()
    if not lib.lib.EVP_PKEY_is_a(pkey, b"SM2"):
        raise KeyAccessError(f"{what} is not an SM2 key (an EC key on another curve, RSA, ...)")


def _read_bio(bio: Any) -> bytes:
    lib = _load()
    pp = lib.ffi.new("char **")
    size = lib.lib.BIO_ctrl(bio, _BIO_CTRL_INFO, 0, pp)
    return bytes(lib.ffi.buffer(pp[0], size))


def _digest_ctx(pkey: Any, user_id: bytes, *, sign: bool) -> tuple[Any, Any]:
    """A fresh (md ctx, pkey ctx) initialised for SM2/SM3 with ``user_id``."""
    lib = _load()
    ffi, c = lib.ffi, lib.lib
    pctx = c.EVP_PKEY_CTX_new_from_pkey(ffi.NULL, pkey, ffi.NULL)
    if pctx == ffi.NULL:
        raise _fail("EVP_PKEY_CTX_new_from_pkey")
    mctx = c.EVP_MD_CTX_new()
    if mctx == ffi.NULL:
        c.EVP_PKEY_CTX_free(pctx)
        raise _fail("EVP_MD_CTX_new")
    if c.EVP_PKEY_CTX_set1_id(pctx, user_id, len(user_id)) != 1:
        c.EVP_MD_CTX_free(mctx)
        c.EVP_PKEY_CTX_free(pctx)
        raise _fail("EVP_PKEY_CTX_set1_id")
    # With set_pkey_ctx the md ctx does not own pctx: both are freed by the caller.
    c.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
    init = c.EVP_DigestSignInit if sign else c.EVP_DigestVerifyInit
    if init(mctx, ffi.NULL, lib.sm3_md, ffi.NULL, pkey) != 1:
        c.EVP_MD_CTX_free(mctx)
        c.EVP_PKEY_CTX_free(pctx)
        raise _fail("EVP_DigestSignInit" if sign else "EVP_DigestVerifyInit")
    return mctx, pctx


class SM2PublicKey:
    """An SM2 public key; verifies SM2-with-SM3 signatures."""

    __slots__ = ("_pkey",)

    def __init__(self, _pkey: Any) -> None:
        self._pkey = _pkey

    @classmethod
    def from_pem(cls, pem: bytes) -> SM2PublicKey:
        """Load a ``-----BEGIN PUBLIC KEY-----`` (SubjectPublicKeyInfo) PEM."""
        lib = _load()
        ffi, c = lib.ffi, lib.lib
        bio = c.BIO_new_mem_buf(pem, len(pem))
        try:
            pkey = c.PEM_read_bio_PUBKEY(bio, ffi.NULL, ffi.NULL, ffi.NULL)
        finally:
            c.BIO_free(bio)
        if pkey == ffi.NULL:
            reasons = _drain_errors(ffi, c)
            raise KeyAccessError(f"not a PEM SubjectPublicKeyInfo: {'; '.join(reasons)}")
        pkey = _owned_pkey(pkey)
        _check_sm2(pkey, "the PEM public key")
        return cls(pkey)

    @classmethod
    def from_der(cls, spki_der: bytes) -> SM2PublicKey:
        """Load a DER SubjectPublicKeyInfo (e.g. from an X.509 certificate)."""
        lib = _load()
        ffi, c = lib.ffi, lib.lib
        buf = ffi.new("unsigned char[]", spki_der)
        pp = ffi.new("const unsigned char **", buf)
        pkey = c.d2i_PUBKEY(ffi.NULL, pp, len(spki_der))
        if pkey == ffi.NULL:
            reasons = _drain_errors(ffi, c)
            raise KeyAccessError(f"not a DER SubjectPublicKeyInfo: {'; '.join(reasons)}")
        pkey = _owned_pkey(pkey)
        _check_sm2(pkey, "the DER public key")
        return cls(pkey)

    def to_der(self) -> bytes:
        """The DER SubjectPublicKeyInfo (id-ecPublicKey, curve SM2)."""
        lib = _load()
        ffi, c = lib.ffi, lib.lib
        pp = ffi.new("unsigned char **")
        size = c.i2d_PUBKEY(self._pkey, ffi.NULL)
        if size <= 0:
            raise _fail("i2d_PUBKEY")
        buf = ffi.new("unsigned char[]", size)
        pp[0] = buf
        if c.i2d_PUBKEY(self._pkey, pp) != size:
            raise _fail("i2d_PUBKEY")
        return bytes(ffi.buffer(buf, size))

    def to_pem(self) -> bytes:
        lib = _load()
        c = lib.lib
        bio = c.BIO_new(c.BIO_s_mem())
        try:
            if c.PEM_write_bio_PUBKEY(bio, self._pkey) != 1:
                raise _fail("PEM_write_bio_PUBKEY")
            return _read_bio(bio)
        finally:
            c.BIO_free(bio)

    def verify(self, signature: bytes, data: bytes, *, user_id: bytes = DEFAULT_ID) -> bool:
        """Whether ``signature`` (DER) is a valid SM2/SM3 signature of ``data``.

        A malformed or wrong signature gives ``False``, never an exception.
        """
        lib = _load()
        c = lib.lib
        mctx, pctx = _digest_ctx(self._pkey, user_id, sign=False)
        try:
            ok = c.EVP_DigestVerify(mctx, signature, len(signature), data, len(data))
        finally:
            c.EVP_MD_CTX_free(mctx)
            c.EVP_PKEY_CTX_free(pctx)
        if ok != 1:
            c.ERR_clear_error()  # 0 = bad signature, <0 = undecodable: both just "invalid"
            return False
        return True


class SM2PrivateKey:
    """An SM2 private key held in memory; implements :class:`Sm2Signer`."""

    __slots__ = ("_pkey",)

    def __init__(self, _pkey: Any) -> None:
        self._pkey = _pkey

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        """A new random key pair on the SM2 curve."""
        lib = _load()
        ffi, c = lib.ffi, lib.lib
        ctx = c.EVP_PKEY_CTX_new_from_name(ffi.NULL, b"SM2", ffi.NULL)
        if ctx == ffi.NULL:
            raise _fail("EVP_PKEY_CTX_new_from_name")
        try:
            out = ffi.new("EVP_PKEY **")
            if c.EVP_PKEY_keygen_init(ctx) != 1 or c.EVP_PKEY_keygen(ctx, out) != 1:
                raise _fail("EVP_PKEY_keygen")
        finally:
            c.EVP_PKEY_CTX_free(ctx)
        return cls(_owned_pkey(out[0]))

    @classmethod
    def from_pem(cls, pem: bytes, passphrase: bytes | None = None) -> SM2PrivateKey:
        """Load a PEM private key (PKCS#8, encrypted PKCS#8, or SEC1 ``EC PRIVATE KEY``)."""
        lib = _load()
        ffi, c = lib.ffi, lib.lib
        bio = c.BIO_new_mem_buf(pem, len(pem))
        # With no callback, OpenSSL takes ``u`` as the NUL-terminated passphrase;
        # an empty one makes an encrypted key fail instead of prompting on a tty.
        secret = ffi.new("char[]", passphrase or b"")
        try:
            pkey = c.PEM_read_bio_PrivateKey(bio, ffi.NULL, ffi.NULL, secret)
        finally:
            c.BIO_free(bio)
        if pkey == ffi.NULL:
            reasons = _drain_errors(ffi, c)
            raise KeyAccessError(
                "cannot read the SM2 private key: not a PEM private key, or a wrong or "
                f"missing passphrase ({'; '.join(reasons)})"
            )
        pkey = _owned_pkey(pkey)
        _check_sm2(pkey, "the PEM private key")
        return cls(pkey)

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        """PEM PKCS#8; encrypted with AES-256-CBC (PBES2) when a passphrase is given."""
        lib = _load()
        ffi, c = lib.ffi, lib.lib
        cipher = ffi.NULL
        if passphrase:
            cipher = c.EVP_CIPHER_fetch(ffi.NULL, b"AES-256-CBC", ffi.NULL)
            if cipher == ffi.NULL:
                raise _fail("EVP_CIPHER_fetch")
        bio = c.BIO_new(c.BIO_s_mem())
        try:
            kstr = passphrase if passphrase else ffi.NULL
            klen = len(passphrase) if passphrase else 0
            if (
                c.PEM_write_bio_PKCS8PrivateKey(
                    bio, self._pkey, cipher, kstr, klen, ffi.NULL, ffi.NULL
                )
                != 1
            ):
                raise _fail("PEM_write_bio_PKCS8PrivateKey")
            return _read_bio(bio)
        finally:
            c.BIO_free(bio)

    def public_key(self) -> SM2PublicKey:
        lib = _load()
        if lib.lib.EVP_PKEY_up_ref(self._pkey) != 1:
            raise _fail("EVP_PKEY_up_ref")
        # The same EVP_PKEY (one more reference); verification only reads the public part.
        return SM2PublicKey(_owned_pkey(self._pkey))

    def sign(self, data: bytes, *, user_id: bytes = DEFAULT_ID) -> bytes:
        """The DER ``SEQUENCE{r, s}`` SM2 signature of ``data`` with SM3 and ``user_id``."""
        lib = _load()
        ffi, c = lib.ffi, lib.lib
        mctx, pctx = _digest_ctx(self._pkey, user_id, sign=True)
        try:
            sig = ffi.new("unsigned char[]", _MAX_SIG_LEN)
            size = ffi.new("size_t *", _MAX_SIG_LEN)
            if c.EVP_DigestSign(mctx, sig, size, data, len(data)) != 1:
                raise _fail("EVP_DigestSign")
            return bytes(ffi.buffer(sig, size[0]))
        finally:
            c.EVP_MD_CTX_free(mctx)
            c.EVP_PKEY_CTX_free(pctx)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_int(v: int) -> bytes:
    body = v.to_bytes(v.bit_length() // 8 + 1, "big")  # a leading 0 keeps it positive
    return b"\x02" + _der_len(len(body)) + body


def raw_to_der(raw: bytes) -> bytes:
    """``r||s`` (64 bytes, big-endian) to DER ``SEQUENCE{INTEGER r, INTEGER s}``."""
    if len(raw) != 64:
        raise ValueError(f"a raw SM2 signature has 64 bytes, got {len(raw)}")
    body = _der_int(int.from_bytes(raw[:32], "big")) + _der_int(int.from_bytes(raw[32:], "big"))
    return b"\x30" + _der_len(len(body)) + body


def der_to_raw(der: bytes) -> bytes:
    """DER ``SEQUENCE{INTEGER r, INTEGER s}`` to ``r||s`` (64 bytes)."""
    from asn1crypto.algos import DSASignature

    try:
        parsed = DSASignature.load(der, strict=True)
        r, s = int(parsed["r"].native), int(parsed["s"].native)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a DER SEQUENCE{INTEGER r, INTEGER s}") from exc
    if not (0 < r < 2**256 and 0 < s < 2**256):
        raise ValueError("r or s out of range for SM2")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sm2_sign_per_s(n: int = 2000, *, data: bytes = b"x" * 512) -> float:
    """Signatures per CPU-second of one thread (the ``figures.sm2_sign_per_s`` bench).

    Uses ``time.thread_time`` so the figure is per core whatever the machine load.
    """
    key = SM2PrivateKey.generate()
    key.sign(data)  # warm up: first-call fetches and caches
    start = time.thread_time()
    for _ in range(n):
        key.sign(data)
    elapsed = time.thread_time() - start
    return n / elapsed if elapsed > 0 else float("inf")
