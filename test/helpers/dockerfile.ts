// Reads the Dockerfile's stages, enough for the tests to start the server the way a target's container would:
// its ENTRYPOINT + CMD, WORKDIR, USER and ENV (inherited through FROM <stage>). Only the forms the Dockerfile uses
// are understood (exec-form JSON arrays, ENV key=value); anything else throws, so the test fails loudly.
import { readFileSync } from "node:fs";

export interface Instruction {
  op: string; // upper case: FROM, RUN, COPY, ...
  args: string; // the rest of the (joined) line
}

export interface Stage {
  name: string | null;
  from: string;
  instructions: Instruction[];
}

export interface ContainerSpec {
  argv: string[]; // ENTRYPOINT followed by CMD
  workdir: string;
  user: string | null;
  env: Record<string, string>;
}

export function parseDockerfile(file: string): Stage[] {
  const lines = readFileSync(file, "utf8").split("\n");
  const joined: string[] = [];
  let current = "";
  for (const raw of lines) {
    const line = raw.trimEnd();
    if (current === "" && (line.trim() === "" || line.trim().startsWith("#"))) continue;
    if (current !== "" && line.trim().startsWith("#")) continue; // comments inside a continued instruction
    if (line.endsWith("\\")) {
      current += line.slice(0, -1) + " ";
      continue;
    }
    joined.push(current + line);
    current = "";
  }
  const stages: Stage[] = [];
  for (const line of joined) {
    const m = /^\s*(\w+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`${file}: cannot read '${line}'`);
    const ins = { op: m[1].toUpperCase(), args: m[2].trim() };
    if (ins.op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!f) throw new Error(`${file}: cannot read FROM ${ins.args}`);
      stages.push({ from: f[1], name: f[2] ?? null, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.op !== "ARG") throw new Error(`${file}: ${ins.op} before the first FROM`);
    } else stages[stages.length - 1].instructions.push(ins);
  }
  return stages;
}

function execForm(ins: Instruction): string[] {
  const v = JSON.parse(ins.args) as unknown;
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
    throw new Error(`${ins.op} must be an exec-form JSON array of strings, got ${ins.args}`);
  return v;
}

export function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of args.match(/(?:[^\s"]+|"[^"]*")+/g) ?? []) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`ENV must be written key=value, got '${pair}'`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1).replace(/^"(.*)"$/, "$1");
  }
  return out;
}

/** What a container of `target` runs, following FROM <stage> to the stages it builds on. */
export function containerSpec(stages: Stage[], target: string): ContainerSpec {
  const chain: Stage[] = [];
  let s = stages.find((x) => x.name === target);
  if (!s) throw new Error(`no stage named ${target}`);
  while (s) {
    chain.unshift(s);
    const parent: Stage | undefined = stages.find((x) => x.name !== null && x.name === s!.from);
    s = parent;
  }
  const spec: ContainerSpec & { entrypoint: string[]; cmd: string[] } = {
    argv: [],
    entrypoint: [],
    cmd: [],
    workdir: "/",
    user: null,
    env: {},
  };
  for (const stage of chain) {
    for (const ins of stage.instructions) {
      if (ins.op === "ENV") Object.assign(spec.env, parseEnv(ins.args));
      else if (ins.op === "WORKDIR") spec.workdir = ins.args;
      else if (ins.op === "USER") spec.user = ins.args;
      else if (ins.op === "ENTRYPOINT") {
        spec.entrypoint = execForm(ins);
        spec.cmd = []; // a new ENTRYPOINT resets an inherited CMD
      } else if (ins.op === "CMD") spec.cmd = execForm(ins);
    }
  }
  return { argv: [...spec.entrypoint, ...spec.cmd], workdir: spec.workdir, user: spec.user, env: spec.env };
}
