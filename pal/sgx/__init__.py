"""A simulated SGX platform and the enclave identity it works with.

SIGSTRUCT (the signed enclave identity), the MRENCLAVE measurement of Gramine's enclave layout,
and the platform's instructions in simulation: EGETKEY (sealing and report keys), EREPORT and
quotes. Byte layouts and algorithms follow Intel's SDM and Gramine (see docs/sgx.md).
"""
