"""Drives a running server with the official KServe v2 / Triton HTTP client (tritonclient[http]).

Usage: kserve_client.py HOST:PORT MODEL IMAGE_FILE... -- TEXT... -- QUESTION...
Prints one JSON object: the health and metadata answers, the outputs of inference with JSON tensors and with binary
tensors, and the messages of the client's InferenceServerException for requests the server refuses. The node test
(test/clients/kserve.test.ts) compares them with the /v1 routes' answers.
"""

import base64
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

OUTPUTS = ["caption", "answer", "image_embedding", "text_embedding", "itm_score"]
NEEDS = {
    "caption": ["image"],
    "answer": ["image", "question"],
    "image_embedding": ["image"],
    "text_embedding": ["text"],
    "itm_score": ["image", "text"],
}


def bytes_input(name, items, binary):
    t = httpclient.InferInput(name, [len(items)], "BYTES")
    t.set_data_from_numpy(np.array(items, dtype=np.object_), binary_data=binary)
    return t


def as_json(result, names):
    out = {}
    for name in names:
        a = result.as_numpy(name)
        if a.dtype == np.object_:
            out[name] = [x.decode("utf-8") if isinstance(x, bytes) else x for x in a.reshape(-1).tolist()]
        else:
            out[name] = {"shape": list(a.shape), "dtype": str(a.dtype), "data": a.reshape(-1).tolist()}
    return out


def refused(call):
    try:
        call()
    except InferenceServerException as e:
        return {"status": e.status(), "message": e.message()}
    return None


def main():
    url, model, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    sep = [i for i, a in enumerate(rest) if a == "--"]
    files, texts, questions = rest[: sep[0]], rest[sep[0] + 1 : sep[1]], rest[sep[1] + 1 :]
    images = []
    for f in files:
        with open(f, "rb") as fh:
            images.append(fh.read())
    client = httpclient.InferenceServerClient(url=url)
    report = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "model_ready_version": client.is_model_ready(model, model_version="1"),
        "server_metadata": client.get_server_metadata(),
        "model_metadata": client.get_model_metadata(model),
    }

    # JSON tensors and JSON outputs: texts and questions as strings, the images as base64 strings
    b64 = [base64.b64encode(b).decode("ascii") for b in images]
    json_inputs = [
        bytes_input("image", b64, binary=False),
        bytes_input("text", texts, binary=False),
        bytes_input("question", questions, binary=False),
    ]
    json_outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in OUTPUTS]
    r = client.infer(model, json_inputs, outputs=json_outputs, request_id="json-1")
    report["json"] = as_json(r, OUTPUTS)
    report["json_id"] = r.get_response()["id"]

    # binary tensors (the client's default) and binary outputs: image files as raw bytes
    bin_inputs = [
        bytes_input("image", images, binary=True),
        bytes_input("text", [t.encode("utf-8") for t in texts], binary=True),
        bytes_input("question", [q.encode("utf-8") for q in questions], binary=True),
    ]
    bin_outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in OUTPUTS]
    r = client.infer(model, bin_inputs, outputs=bin_outputs, model_version="1", request_id="bin-1")
    report["binary"] = as_json(r, OUTPUTS)
    report["binary_response"] = r.get_response()

    # one output at a time, binary image and JSON text (what each output needs and nothing else)
    report["each"] = {}
    for name in OUTPUTS:
        needs = NEEDS[name]
        ins = []
        if "image" in needs:
            ins.append(bytes_input("image", images, binary=True))
        if "text" in needs:
            ins.append(bytes_input("text", texts, binary=False))
        if "question" in needs:
            ins.append(bytes_input("question", questions, binary=False))
        r = client.infer(model, ins, outputs=[httpclient.InferRequestedOutput(name)])
        report["each"][name] = as_json(r, [name])[name]

    report["errors"] = {
        "unknown_model": refused(lambda: client.infer("nope", [bytes_input("text", texts, binary=False)])),
        "no_outputs": refused(lambda: client.infer(model, [bytes_input("text", texts, binary=False)])),
        "model_ready_unknown": client.is_model_ready("nope"),
        "metadata_unknown": refused(lambda: client.get_model_metadata("nope")),
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
