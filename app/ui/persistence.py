"""The user's data on disk: settings, conversations, history and result images (DESIGN.md §6).

Everything is JSON or PNG under one folder (platformdirs' user data dir unless the app is given
another). Writes are atomic (a temp file in the same folder, then `os.replace`), so a crash or a
full disk never leaves half a file. A file that cannot be read is renamed `*.corrupt-<time>` and
reported as a warning; the app carries on with defaults. No Qt here, so it tests without a GUI.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from app.protocol import MAX_REDRAWS, THINKING_PARAMS


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=1, ensure_ascii=False).encode("utf-8"))


def set_aside(path: Path, why: str, warnings: list[str]) -> None:
    """Rename an unreadable file out of the way (kept for the user to inspect) and say so."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.replace(path, target)
        where = f"; it was kept as {target.name}"
    except OSError:
        where = ""
    warnings.append(f"{path.name} could not be read ({why}){where}. Starting without it.")


def read_json(path: Path, warnings: list[str], expect: type = dict) -> Any | None:
    """The JSON value in `path`, None if missing; a corrupt file is set aside with a warning."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        warnings.append(f"{path.name} could not be read ({exc.strerror}).")
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        set_aside(path, f"not valid JSON: {exc}", warnings)
        return None
    if not isinstance(value, expect):
        set_aside(path, f"expected a JSON {expect.__name__}", warnings)
        return None
    return value


# ---- settings ------------------------------------------------------------------------------
MODEL_DEFAULT = -1
@dataclass
class Settings:
    model_path: str = ""  # "" = the shipped demo model
    device: str = "cpu"  # cpu | cuda
    gpu_budget_gib: float = 0.0  # expert placement: GPU memory for experts, 0 = automatic
    int8_cpu_experts: bool = False
    # Sampling: MODEL_DEFAULT (below every valid value) leaves the choice to the model folder's
    # config.json `unmask_defaults`, which is tuned per model.
    image_steps: int = MODEL_DEFAULT
    text_steps: int = MODEL_DEFAULT
    block_length: int = MODEL_DEFAULT
    gen_length: int = MODEL_DEFAULT
    cfg: float = float(MODEL_DEFAULT)
    threshold: float = float(MODEL_DEFAULT)
    temperature: float = float(MODEL_DEFAULT)
    text_temperature: float = float(MODEL_DEFAULT)
    # Write a full description first, then draw, edit or answer after it (thinking mode, for
    # every task that has it): "default" (the model folder decides), "on" or "off".
    thinking: str = "default"
    # Redraws the self-check may make when the model does not read its picture back as the
    # text it drew from (app/engine/self_check.py): 0 = off, MODEL_DEFAULT = the folder decides.
    self_check: int = MODEL_DEFAULT
    seed_random: bool = True
    seed: int = 1234
    self_correction: bool = False
    remask_threshold: float = 0.1
    brush_size: int = 6
    playback_fps: float = 8.0
    overlays: list[str] = field(default_factory=lambda: ["mask"])
    last_conversation: str = ""
    window_geometry: str = ""

    def params(self) -> dict[str, Any]:
        """Sampling parameters for a Generate request (app/engine/jobs.py JobSpec.params)."""
        chosen = {
            "image_steps": self.image_steps, "text_steps": self.text_steps,
            "block_length": self.block_length, "gen_length": self.gen_length, "cfg": self.cfg,
            "threshold": self.threshold, "temperature": self.temperature,
            "text_temperature": self.text_temperature,
        }
        # ints below 1 and floats below 0 are the settings dialog's "model default"
        params: dict[str, Any] = {k: v for k, v in chosen.items()
                                  if (v >= 1 if isinstance(v, int) else v >= 0)}
        params["seed"] = None if self.seed_random else self.seed
        if self.thinking in ("on", "off"):
            params.update(dict.fromkeys(THINKING_PARAMS.values(), self.thinking == "on"))
        if 0 <= self.self_check <= MAX_REDRAWS:  # 0 is a choice (off), not "model default"
            params["self_check"] = self.self_check
        if self.self_correction:
            params["remask_threshold"] = self.remask_threshold
        return params

    def placement(self) -> dict[str, Any] | None:
        """Expert placement for LoadModel; None on the CPU (nothing to place)."""
        if self.device == "cpu":
            return None
        budget = "auto" if self.gpu_budget_gib <= 0 else int(self.gpu_budget_gib * 2**30)
        return {"budget": budget, "int8_cpu": self.int8_cpu_experts}


def load_settings(path: Path, warnings: list[str]) -> Settings:
    data = read_json(path, warnings) or {}
    defaults = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name not in data:
            continue
        value, default = data[f.name], getattr(defaults, f.name)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, type(default)) and not (
                isinstance(value, bool) and not isinstance(default, bool))
        if ok:
            values[f.name] = value
        else:
            warnings.append(f"settings.json: ignored {f.name}={value!r} (wrong type)")
    return Settings(**values)


def save_settings(path: Path, settings: Settings) -> None:
    write_json(path, asdict(settings))


# ---- conversations -------------------------------------------------------------------------
def new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Message:
    role: str  # "user" | "assistant"
    text: str = ""
    mode: str = ""  # draw | edit | inpaint | ask | chat
    images: list[str] = field(default_factory=list)  # file names in the images folder
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "done"  # running | done | failed | cancelled
    run_id: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> Message:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Conversation:
    id: str = field(default_factory=new_id)
    title: str = "New conversation"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    messages: list[Message] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "created": self.created,
                "updated": self.updated, "messages": [asdict(m) for m in self.messages]}

    @classmethod
    def from_dict(cls, data: dict) -> Conversation:
        return cls(id=str(data["id"]), title=str(data.get("title", "Conversation")),
                   created=float(data.get("created", 0)), updated=float(data.get("updated", 0)),
                   messages=[Message.from_dict(m) for m in data.get("messages", [])])


class ConversationStore:
    """conversations/<id>.json, one file per conversation."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, conv_id: str) -> Path:
        return self.folder / f"{conv_id}.json"

    def load_all(self, warnings: list[str]) -> list[Conversation]:
        conversations = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            data = read_json(path, warnings)
            if data is None:
                continue
            try:
                conversations.append(Conversation.from_dict(data))
            except (KeyError, TypeError, ValueError) as exc:
                set_aside(path, f"unexpected content: {exc}", warnings)
        return sorted(conversations, key=lambda c: c.updated, reverse=True)

    def save(self, conversation: Conversation) -> None:
        write_json(self.path(conversation.id), conversation.to_dict())

    def delete(self, conv_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(conv_id).unlink()


# ---- history -------------------------------------------------------------------------------
@dataclass
class HistoryEntry:
    """One result and exactly how to reproduce it (krita-ai-diffusion's lesson)."""

    id: str
    task: str
    prompt: str
    params: dict[str, Any]  # resolved by the worker: the seed is always concrete
    image: str = ""  # file name in the images folder (image tasks)
    text: str = ""  # answer (text tasks)
    model: str = ""
    created: float = field(default_factory=time.time)
    starred: bool = False
    inputs: list[str] = field(default_factory=list)  # input images (files), for re-runs
    mask: str = ""  # inpaint mask file

    @classmethod
    def from_dict(cls, data: dict) -> HistoryEntry:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class HistoryStore:
    def __init__(self, path: Path):
        self.path = path

    def load(self, warnings: list[str]) -> list[HistoryEntry]:
        data = read_json(self.path, warnings, expect=list) or []
        entries = []
        for item in data:
            with contextlib.suppress(KeyError, TypeError):
                entries.append(HistoryEntry.from_dict(item))
        return entries

    def save(self, entries: list[HistoryEntry]) -> None:
        write_json(self.path, [asdict(e) for e in entries])


class ImageStore:
    """PNG files referenced by conversations and history, by name."""

    def __init__(self, folder: Path):
        self.folder = folder

    def put(self, png: bytes, prefix: str = "img") -> str:
        name = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{new_id()[:6]}.png"
        atomic_write(self.folder / name, png)
        return name

    def get(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except OSError:
            return None

    def delete(self, name: str) -> None:
        with contextlib.suppress(OSError):
            (self.folder / name).unlink()


class DataDir:
    """The folder layout under the user data dir."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings_path = self.root / "settings.json"
        self.conversations = ConversationStore(self.root / "conversations")
        self.history = HistoryStore(self.root / "history.json")
        self.images = ImageStore(self.root / "images")
