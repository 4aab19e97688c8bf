"""Records into a JSON-lines file, {"key": ..., "value": ...} per record in send order, for
tests and offline checks. The value is the payload as text (every payload is UTF-8, even the
broken ones)."""

from __future__ import annotations

from pathlib import Path

import orjson


class FileWriter:
    def __init__(self, path: Path, ids: list[str]):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = path.open("wb")
        self.ids = ids

    def write(self, meters: list[int], values: list[bytes]) -> None:
        ids, dumps = self.ids, orjson.dumps
        self.handle.writelines(dumps({"key": ids[m], "value": v.decode()}) + b"\n"
                               for m, v in zip(meters, values, strict=True))

    def close(self) -> None:
        self.handle.close()
