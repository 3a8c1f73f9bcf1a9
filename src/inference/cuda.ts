// Why the CUDA execution provider cannot be used, in words a person can act on. onnxruntime-node only says
// "Failed to load shared library" when its CUDA provider does not load, so the worker looks for itself: is the
// provider library installed, which of the libraries it links are missing (ldd), can cuDNN be loaded (it is
// opened at run time, not linked)? Each missing piece is named with what brings it.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

export const CUDA_PROVIDER_FILE = "libonnxruntime_providers_cuda.so";
export const CUDNN_SONAME = "libcudnn.so.9";

/** What a missing shared library belongs to. */
export type CudaPart = "driver" | "cudnn" | "cuda_runtime" | "other";

export interface CudaFindings {
  providerPath: string | null; // onnxruntime-node's CUDA provider library, null when not installed
  missingLibraries: string[]; // sonames the provider links that the loader cannot find (from ldd)
  cudnnLoadable: boolean | null; // whether libcudnn.so.9 can be opened; null when not checked
  error: string | null; // onnxruntime's own message, when it was the session that failed
}

/** The provider library inside onnxruntime-node's bin/ folder (its install script downloads it), or null. */
export function findCudaProvider(): string | null {
  const binRoot = path.join(path.dirname(createRequire(import.meta.url).resolve("onnxruntime-node")), "..", "bin");
  if (!existsSync(binRoot)) return null;
  for (const napi of readdirSync(binRoot)) {
    const file = path.join(binRoot, napi, process.platform, process.arch, CUDA_PROVIDER_FILE);
    if (existsSync(file)) return file;
  }
  return null;
}

/** Sonames that ldd reports as "not found", in its order. */
export function parseLddMissing(lddOutput: string): string[] {
  const out: string[] = [];
  for (const line of lddOutput.split("\n")) {
    const m = /^\s*(\S+)\s+=>\s+not found/.exec(line);
    if (m && !out.includes(m[1])) out.push(m[1]);
  }
  return out;
}

/** Runs ldd on `file`; [] when ldd itself is unavailable (then only onnxruntime's message is left to report). */
export function missingLinkedLibraries(file: string): string[] {
  try {
    return parseLddMissing(execFileSync("ldd", [file], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }));
  } catch {
    return [];
  }
}

/** Whether the dynamic loader can open `soname` (library path, ld.so cache), as onnxruntime's dlopen would. */
export function loadable(soname: string): boolean {
  try {
    process.dlopen({ exports: {} }, soname);
    return true;
  } catch (err) {
    // "Module did not self-register" and the like: the loader found it, it is just not a Node addon
    return !(err as Error).message.includes(`${soname}: cannot open shared object file`);
  }
}

export function classifyLibrary(soname: string): CudaPart {
  if (/^libcuda\.so/.test(soname) || /^libnvidia-/.test(soname)) return "driver";
  if (/^libcudnn/.test(soname)) return "cudnn";
  if (/^lib(cu|nv)/.test(soname)) return "cuda_runtime";
  return "other";
}

const REMEDY: Record<CudaPart, string> = {
  driver:
    "the NVIDIA driver library is not visible: no GPU is exposed to this process " +
    "(docker run --gpus all; on Kubernetes request nvidia.com/gpu on a node with the NVIDIA device plugin)",
  cuda_runtime:
    "the CUDA runtime libraries are missing (use the gpu image, based on nvidia/cuda:*-cudnn-runtime, " +
    "or install the CUDA 12 runtime and add it to the library path)",
  cudnn: "cuDNN 9 is missing (use the gpu image, or install cuDNN 9 for CUDA 12 and add it to the library path)",
  other: "a library the CUDA provider needs is missing",
};

/** One sentence saying what is missing and what brings it, from what the worker found. */
export function explainCudaFailure(f: CudaFindings): string {
  if (f.providerPath === null) {
    return (
      `onnxruntime-node's CUDA provider library (${CUDA_PROVIDER_FILE}) is not installed: ` +
      "use the gpu image, or install it with npm ci --onnxruntime-node-install=cuda12"
    );
  }
  const byPart = new Map<CudaPart, string[]>();
  for (const lib of f.missingLibraries) {
    const part = classifyLibrary(lib);
    byPart.set(part, [...(byPart.get(part) ?? []), lib]);
  }
  if (f.cudnnLoadable === false) byPart.set("cudnn", [...(byPart.get("cudnn") ?? []), CUDNN_SONAME]);
  if (byPart.size > 0) {
    const order: CudaPart[] = ["driver", "cuda_runtime", "cudnn", "other"];
    return order
      .filter((p) => byPart.has(p))
      .map((p) => `${REMEDY[p]}: ${byPart.get(p)!.join(", ")} not found`)
      .join("; ");
  }
  const why = (f.error ?? "unknown error").split("\n")[0];
  if (/no CUDA-capable device|driver version is insufficient|CUDA driver|cudaErrorNoDevice/i.test(why))
    return `the CUDA provider loaded but found no usable GPU (${why})`;
  return `the CUDA provider failed to start (${why})`;
}
