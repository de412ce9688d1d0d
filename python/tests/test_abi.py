"""The ctypes mirrors of the public structs (polyattn/_lib.py) against include/polyattn.h:
a small C program compiled here prints each struct's size and each member's offset and
size, which must equal the ctypes layout (a member missing, added or of the wrong type on
either side moves one of them)."""
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from polyattn import _lib

INCLUDE = Path(__file__).resolve().parents[2] / "include"
STRUCTS = {
    "polyattn_tensor_desc": _lib.TensorDesc,
    "polyattn_attention_desc": _lib.AttentionDesc,
    "polyattn_extra_tensors": _lib.ExtraTensors,
    "polyattn_plan_options": _lib.PlanOptions,
    "polyattn_candidate": _lib.Candidate,
    "polyattn_plan_info": _lib.PlanInfo,
    "polyattn_device_info": _lib.DeviceInfo,
}


def _compiler():
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    cc = _compiler()
    if cc is None or not (INCLUDE / "polyattn.h").exists():
        pytest.skip("no C compiler or no include/polyattn.h beside the package")
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "polyattn.h"',
             "int main(void) {"]
    for cname, cls in STRUCTS.items():
        lines.append(f'    printf("{cname} . %zu\\n", sizeof({cname}));')
        for field, _ in cls._fields_:
            lines.append(f'    printf("{cname} {field} %zu %zu\\n", offsetof({cname}, {field}), '
                         f'sizeof((({cname} *)0)->{field}));')
    lines += ["    return 0;", "}"]
    folder = tmp_path_factory.mktemp("abi")
    src, exe = folder / "layout.c", folder / "layout"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run([cc, "-std=c99", f"-I{INCLUDE}", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    layout = {}
    for line in out.splitlines():
        cname, field, *numbers = line.split()
        layout[(cname, field)] = tuple(int(n) for n in numbers)
    return layout


@pytest.mark.parametrize("cname", sorted(STRUCTS))
def test_struct_layout_matches_header(c_layout, cname):
    cls = STRUCTS[cname]
    assert c_layout[(cname, ".")] == (ctypes.sizeof(cls),), f"sizeof({cname})"
    for field, ftype in cls._fields_:
        want = (getattr(cls, field).offset, ctypes.sizeof(ftype))
        assert c_layout[(cname, field)] == want, f"{cname}.{field}: (offset, size)"
