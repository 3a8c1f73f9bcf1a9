// What DEVICE=cuda / auto say when CUDA cannot be used: the provider library, the CUDA runtime, cuDNN or the
// driver, named from ldd's findings (real ldd output from a provider library on a machine without CUDA).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  classifyLibrary,
  explainCudaFailure,
  findCudaProvider,
  loadable,
  missingLinkedLibraries,
  parseLddMissing,
} from "../../src/inference/cuda.js";

const LDD = `	linux-vdso.so.1 (0x00007ff3a7964000)
	libcublasLt.so.12 => not found
	libcublas.so.12 => not found
	libcurand.so.10 => not found
	libcudart.so.12 => /usr/local/cuda-12.8/lib/libcudart.so.12 (0x00007ff393200000)
	libcuda.so.1 => not found
	libstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007ff392e00000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ff39301e000)
`;
const PROVIDER = "/app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so";

test("ldd's 'not found' lines, in order", () => {
  assert.deepEqual(parseLddMissing(LDD), ["libcublasLt.so.12", "libcublas.so.12", "libcurand.so.10", "libcuda.so.1"]);
  assert.deepEqual(parseLddMissing("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n"), []);
});

test("libraries are told apart: driver, CUDA runtime, cuDNN", () => {
  assert.equal(classifyLibrary("libcuda.so.1"), "driver");
  assert.equal(classifyLibrary("libcudart.so.12"), "cuda_runtime");
  assert.equal(classifyLibrary("libcublasLt.so.12"), "cuda_runtime");
  assert.equal(classifyLibrary("libnvrtc.so.12"), "cuda_runtime");
  assert.equal(classifyLibrary("libcudnn.so.9"), "cudnn");
  assert.equal(classifyLibrary("libfoo.so.1"), "other");
});

test("no provider library: says so and how to install it", () => {
  const m = explainCudaFailure({ providerPath: null, missingLibraries: [], cudnnLoadable: null, error: null });
  assert.match(m, /CUDA provider library \(libonnxruntime_providers_cuda\.so\) is not installed/);
  assert.match(m, /--onnxruntime-node-install=cuda12/);
});

test("missing CUDA runtime and driver libraries are named, driver first", () => {
  const m = explainCudaFailure({
    providerPath: PROVIDER,
    missingLibraries: parseLddMissing(LDD),
    cudnnLoadable: null,
    error: "OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library",
  });
  assert.match(
    m,
    /^the NVIDIA driver library is not visible: no GPU is exposed .*--gpus all.*: libcuda\.so\.1 not found; /,
  );
  assert.match(
    m,
    /the CUDA runtime libraries are missing .*: libcublasLt\.so\.12, libcublas\.so\.12, libcurand\.so\.10 not found$/,
  );
});

test("cuDNN missing (opened at run time, not linked)", () => {
  const m = explainCudaFailure({ providerPath: PROVIDER, missingLibraries: [], cudnnLoadable: false, error: "x" });
  assert.match(m, /^cuDNN 9 is missing .*: libcudnn\.so\.9 not found$/);
});

test("everything present but no device, or another failure: onnxruntime's words", () => {
  const none = "CUDA failure 100: no CUDA-capable device is detected ; GPU=0 ; expr=cudaSetDevice(info_.device_id);";
  const f = { providerPath: PROVIDER, missingLibraries: [], cudnnLoadable: true };
  assert.match(
    explainCudaFailure({ ...f, error: none }),
    /^the CUDA provider loaded but found no usable GPU \(CUDA failure 100/,
  );
  assert.match(explainCudaFailure({ ...f, error: "boom\nstack" }), /^the CUDA provider failed to start \(boom\)$/);
});

test("the probes work on this machine: ldd, the loader, the provider lookup", () => {
  assert.deepEqual(missingLinkedLibraries(process.execPath), []);
  assert.deepEqual(missingLinkedLibraries("/no/such/file.so"), []);
  assert.equal(loadable("libc.so.6"), true);
  assert.equal(loadable("libdlip-test-no-such-library.so.1"), false);
  const p = findCudaProvider();
  assert.ok(p === null || p.endsWith("libonnxruntime_providers_cuda.so"));
});
