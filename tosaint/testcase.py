"""Test-case folders on disk: desc.json, the tensor name -> file name map, and safe file names.

A folder in the TOSA conformance layout holds ``desc.json`` (``tosa_file``, ``ifm_name``,
``ifm_file``, ``ofm_name``, ``ofm_file``, ``expected_result_file``, ``expected_failure``), the
model and one ``.npy`` per tensor.  The lists of names and files in desc.json *are* the name ->
file map.  A folder of tensors without a desc (``tosaint run -o DIR``) records its map in
``tensors.json``.

File names are unique per folder by construction, for any tensor names:

* ``escape`` keeps ASCII letters, digits, ``-`` and ``_`` (and ``.`` except in front) and
  writes every other byte of the UTF-8 name as ``%XX``: reversible (``unescape``), so two
  names never escape to the same text;
* a name too long for a file system (``MAX_FILE_BYTES``) is cut and gets ``~`` + a digest of
  the whole name; a file name that is taken already in the folder (``Conformance-y`` as an
  input beside output ``y``'s ``Conformance-y``, or names equal but for case) gets ``~`` + a
  digest too (then a counter).  ``~`` never appears in an escaped name, so a suffixed name
  cannot be taken by another tensor's plain one.

Reading is defensive: desc.json must be a JSON object with lists of strings of matching
lengths; every file it names must be a regular file inside the folder (no ``..``, no
absolute paths, no FIFOs or devices: checked before opening); ``.npy`` files are loaded with
``allow_pickle=False``.  Any problem raises ``CaseFolderError`` naming the folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np

from .errors import InputError

DESC = "desc.json"
TENSOR_MAP = "tensors.json"
MODEL_FILE = "model.tosa"
#: keys of a desc.json written by tosaint (and needed to run a positive test)
DESC_KEYS = ("tosa_file", "ifm_name", "ifm_file", "ofm_name", "ofm_file",
             "expected_result_file")
#: the longest file name written (bytes), well under the common 255-byte limit so that
#: temporary prefixes and suffixes still fit
MAX_FILE_BYTES = 200
#: the largest desc.json / tensors.json read
MAX_JSON_BYTES = 16 << 20

_KEEP = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class CaseFolderError(InputError):
    """A test-case folder (desc.json, a file it names) is unreadable or malformed."""


# ---- names ------------------------------------------------------------------------------------
def escape(name: str) -> str:
    """A reversible file-name-safe form of ``name`` (never empty, never starting with ``.``)."""
    out = []
    for i, b in enumerate(str(name).encode("utf-8", "surrogatepass")):
        c = chr(b)
        if c in _KEEP and not (i == 0 and c == "."):
            out.append(c)
        else:
            out.append(f"%{b:02X}")
    return "".join(out) or "%"


def unescape(text: str) -> str:
    """The tensor name that ``escape`` turned into ``text``."""
    if text == "%":
        return ""
    from urllib.parse import unquote_to_bytes
    return unquote_to_bytes(text).decode("utf-8", "surrogatepass")


def _digest(name, n=10):
    return hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:n]


class FileNames:
    """Allocates file names in one folder: distinct for distinct tensors, stable for the same
    names in the same order.  ``taken`` holds names already used (compared ignoring case)."""

    def __init__(self, taken=(DESC, TENSOR_MAP, MODEL_FILE)):
        self.taken = {t.lower() for t in taken}

    def take(self, name, prefix="", suffix=".npy"):
        esc = escape(name)
        room = MAX_FILE_BYTES - len(prefix.encode()) - len(suffix.encode()) - 12
        if len(esc) > room:
            cut = esc[:max(room, 1)]
            pct = cut.rfind("%", len(cut) - 2)      # do not cut an %XX escape in two
            esc = (cut[:pct] if pct >= 0 else cut) + "~" + _digest(name)
        f = prefix + esc + suffix
        if f.lower() in self.taken:
            base = prefix + esc + "~" + _digest(name, 8)
            f, i = base + suffix, 2
            while f.lower() in self.taken:
                f, i = f"{base}~{i}{suffix}", i + 1
        self.taken.add(f.lower())
        return f

    def take_all(self, names, prefix="", suffix=".npy"):
        return [self.take(n, prefix, suffix) for n in names]


def case_files(ifm_names, ofm_names):
    """(ifm_file, ofm_file, expected_result_file) for a conformance folder, all distinct."""
    fn = FileNames()
    ifm = fn.take_all(ifm_names)
    exp = fn.take_all(ofm_names, "Conformance-")
    ofm = fn.take_all(ofm_names, "result-")
    return ifm, ofm, exp


def make_desc(ifm_names, ofm_names, *, tosa_file=MODEL_FILE, expected_failure=False,
              meta=None):
    """A desc.json dict with file names planned by ``case_files``."""
    ifm, ofm, exp = case_files(ifm_names, ofm_names)
    desc = {"tosa_file": tosa_file, "ifm_name": list(ifm_names), "ifm_file": ifm,
            "ofm_name": list(ofm_names), "ofm_file": ofm, "expected_result_file": exp,
            "expected_failure": bool(expected_failure)}
    if meta is not None:
        desc["meta"] = meta
    return desc


# ---- writing ----------------------------------------------------------------------------------
def write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically (a temp file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=1) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_desc(folder, desc):
    write_json(Path(folder) / DESC, desc)


def write_tensors(folder, tensors, *, names=None):
    """Save ``tensors`` ({name: array}) as .npy files in ``folder`` with their name -> file map
    in ``tensors.json``; returns the map.  Every file name is planned (and checked) before
    the first file is written."""
    names = list(tensors if names is None else names)
    files = FileNames().take_all(names)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mapping = dict(zip(names, files))
    for n, f in mapping.items():
        np.save(folder / f, np.asarray(tensors[n]), allow_pickle=False)
    write_json(folder / TENSOR_MAP, {"tensors": mapping})
    return mapping


# ---- reading ----------------------------------------------------------------------------------
def _regular(path, what):
    """``path`` if it is a regular file (checked without opening it: a FIFO would block)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise CaseFolderError(f"{what}: cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CaseFolderError(f"{what}: {path} is not a regular file")
    return st


def case_path(folder, fname, *, what=None, outside=False):
    """The path of file ``fname`` named by the folder's JSON, refused when it leads outside
    the folder (unless ``outside``) or is not a regular file."""
    folder = Path(folder)
    what = what or str(folder)
    if not isinstance(fname, str) or not fname or "\0" in fname:
        raise CaseFolderError(f"{what}: bad file name {fname!r}")
    p = folder / fname
    if not outside:
        root = folder.resolve()
        real = p.resolve()
        if real != root and root not in real.parents:
            raise CaseFolderError(f"{what}: {fname!r} lies outside the test folder")
    _regular(p, what)
    return p


def read_json(path, what=None):
    what = what or str(path)
    st = _regular(path, what)
    if st.st_size > MAX_JSON_BYTES:
        raise CaseFolderError(f"{what}: {Path(path).name} is {st.st_size} bytes, more than "
                              f"{MAX_JSON_BYTES}")
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(MAX_JSON_BYTES + 1))
    except (ValueError, RecursionError) as e:
        raise CaseFolderError(f"{what}: {Path(path).name} is not valid JSON: {e}") from None
    except OSError as e:
        raise CaseFolderError(f"{what}: cannot read {Path(path).name}: {e.strerror}") from None


def _str_list(desc, key, what, required=True):
    v = desc.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise CaseFolderError(f"{what}: desc.json {key!r} must be a list of strings, not "
                              f"{type(v).__name__}")
    return v


def read_desc(folder):
    """The checked desc.json of ``folder`` (a dict; list fields are lists of strings)."""
    what = str(folder)
    desc = read_json(Path(folder) / DESC, what)
    if not isinstance(desc, dict):
        raise CaseFolderError(f"{what}: desc.json must hold a JSON object, not a "
                              f"{type(desc).__name__}")
    if not isinstance(desc.get("tosa_file"), str):
        raise CaseFolderError(f"{what}: desc.json has no \"tosa_file\" string")
    names = {k: _str_list(desc, k, what, required=k.startswith("ifm"))
             for k in ("ifm_name", "ifm_file", "ofm_name", "ofm_file", "expected_result_file")}
    if len(names["ifm_name"]) != len(names["ifm_file"]):
        raise CaseFolderError(f"{what}: desc.json has {len(names['ifm_name'])} ifm_name but "
                              f"{len(names['ifm_file'])} ifm_file")
    desc["ofm_name"] = names["ofm_name"] or []
    for k in ("ofm_file", "expected_result_file"):
        if names[k] is not None and len(names[k]) != len(desc["ofm_name"]):
            raise CaseFolderError(f"{what}: desc.json has {len(desc['ofm_name'])} ofm_name "
                                  f"but {len(names[k])} {k}")
    ef = desc.get("expected_failure", False)
    if not isinstance(ef, bool):
        raise CaseFolderError(f"{what}: desc.json \"expected_failure\" must be true or false")
    return desc


def load_npy(folder, fname, *, what=None, outside=False):
    """An array from ``folder/fname`` (a regular .npy file inside the folder, no pickles)."""
    what = what or str(folder)
    p = case_path(folder, fname, what=what, outside=outside)
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise CaseFolderError(f"{what}: {fname} is not a readable .npy file: {e}") from None


def tensor_map(folder):
    """{tensor name: file name} recorded in ``folder`` (tensors.json, or desc.json's names),
    or None when the folder records none."""
    folder = Path(folder)
    if (folder / TENSOR_MAP).exists():
        data = read_json(folder / TENSOR_MAP)
        m = data.get("tensors") if isinstance(data, dict) else None
        if not isinstance(m, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in m.items()):
            raise CaseFolderError(f"{folder}: {TENSOR_MAP} must hold {{\"tensors\": "
                                  "{name: file}}")
        return m
    if (folder / DESC).exists():
        desc = read_desc(folder)
        m = dict(zip(desc["ifm_name"], desc["ifm_file"]))
        m.update(zip(desc["ofm_name"], desc.get("expected_result_file") or desc["ofm_file"]))
        return m
    return None


__all__ = ["CaseFolderError", "FileNames", "escape", "unescape", "case_files", "make_desc",
           "write_desc", "write_json", "write_tensors", "read_desc", "read_json",
           "load_npy", "case_path", "tensor_map", "DESC_KEYS", "MODEL_FILE", "MAX_FILE_BYTES"]
