"""Drives the server's chat completions with the official `openai` Python package (pinned in
training/requirements.txt). Usage: openai_chat.py BASE_URL IMAGE_DATA_URI_FILE QUESTION. Prints one JSON object
with what the SDK returned; test/clients/openai.test.ts compares it with the server's own routes."""

import json
import sys

import openai
from openai import OpenAI


def main() -> None:
    base_url, image_file, question = sys.argv[1:4]
    with open(image_file, encoding="ascii") as f:
        image = f.read().strip()
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    image_part = {"type": "image_url", "image_url": {"url": image}}

    def ask(content, **kw):
        return client.chat.completions.create(model="micro", messages=[{"role": "user", "content": content}], **kw)

    caption = ask([image_part])
    vqa = ask([{"type": "text", "text": question}, image_part])
    two = ask([image_part], n=2)
    deltas, finish, usage, roles = [], None, None, []
    for chunk in ask([image_part], stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for c in chunk.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            if c.delta.content:
                deltas.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    try:
        ask([{"type": "text", "text": question}])
        error = None
    except openai.BadRequestError as e:
        error = {"class": type(e).__name__, "status": e.status_code, "param": e.body.get("param")}
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": [image_part]}])
        missing = None
    except openai.NotFoundError as e:
        missing = {"class": type(e).__name__, "status": e.status_code}
    print(json.dumps({
        "version": openai.__version__,
        "caption": caption.choices[0].message.content,
        "caption_finish": caption.choices[0].finish_reason,
        "caption_usage": caption.usage.model_dump(),
        "vqa": vqa.choices[0].message.content,
        "n2": [c.message.content for c in two.choices],
        "stream_text": "".join(deltas),
        "stream_deltas": len(deltas),
        "stream_roles": roles,
        "stream_finish": finish,
        "stream_usage": usage,
        "error": error,
        "missing": missing,
    }))


if __name__ == "__main__":
    main()
