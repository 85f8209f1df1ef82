/* TEST DOUBLE of libcuda.so.1 (NOT the CUDA driver): the entry points sage-edge calls through ctypes
 * (runtime/cuda_memory.py), with the C signatures of the CUDA driver API (cuda.h), so that the real ctypes
 * path -- argument types, out-pointers, the unsigned long long flags -- runs in the tests. Every call is
 * recorded in `stub_log` with the values it received; the Python double (fake_pycuda.FakeLibCuda) covers
 * the behaviour, this stub covers the marshalling. Built by tests/test_cuda_ctypes.py with the C compiler.
 */
#include <stdio.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUstream;
typedef void *CUgraph;
typedef void *CUgraphExec;

char stub_log[4096];
static int capturing = 0;

static void note(const char *text) {
    size_t used = strlen(stub_log);
    snprintf(stub_log + used, sizeof(stub_log) - used, "%s;", text);
}

CUresult cuInit(unsigned int flags) { char b[64]; snprintf(b, 64, "cuInit(%u)", flags); note(b); return 0; }

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    char b[64]; snprintf(b, 64, "cuDeviceGet(%d)", ordinal); note(b);
    if (ordinal != 0) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *device = 7;
    return 0;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice device) {
    char b[64]; snprintf(b, 64, "cuDeviceGetName(%d,%d)", len, device); note(b);
    snprintf(name, (size_t)len, "%s", "Stub GPU");
    return 0;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice device) {
    char b[64]; snprintf(b, 64, "cuDeviceGetAttribute(%d,%d)", attribute, device); note(b);
    if (attribute == 75) *value = 8;        /* COMPUTE_CAPABILITY_MAJOR */
    else if (attribute == 76) *value = 7;   /* COMPUTE_CAPABILITY_MINOR */
    else if (attribute == 18) *value = 1;   /* INTEGRATED */
    else return 1;
    return 0;
}

CUresult cuStreamBeginCapture_v2(CUstream stream, int mode) {
    char b[96]; snprintf(b, 96, "begin(%p,%d)", stream, mode); note(b);
    if (capturing) return 401; /* CUDA_ERROR_ILLEGAL_STATE */
    capturing = 1;
    return 0;
}

CUresult cuStreamEndCapture(CUstream stream, CUgraph *graph) {
    char b[96]; snprintf(b, 96, "end(%p)", stream); note(b);
    if (!capturing) return 401;
    capturing = 0;
    *graph = (CUgraph)0x6a;
    return 0;
}

CUresult cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph graph, unsigned long long flags) {
    char b[96]; snprintf(b, 96, "instantiate(%p,%llu)", graph, flags); note(b);
    if (graph != (CUgraph)0x6a) return 1;
    *exec = (CUgraphExec)0x6b;
    return 0;
}

CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
    char b[96]; snprintf(b, 96, "launch(%p,%p)", exec, stream); note(b);
    return exec == (CUgraphExec)0x6b ? 0 : 1;
}

CUresult cuGraphExecDestroy(CUgraphExec exec) {
    char b[64]; snprintf(b, 64, "execdestroy(%p)", exec); note(b);
    return exec == (CUgraphExec)0x6b ? 0 : 1;
}

CUresult cuGraphDestroy(CUgraph graph) {
    char b[64]; snprintf(b, 64, "graphdestroy(%p)", graph); note(b);
    return graph == (CUgraph)0x6a ? 0 : 1;
}
