"""Generate and build a firmware: TFLM + CMSIS-NN, the model as a C array, and the chipfit harness, for one
Cortex-M core, with the Arm GNU toolchain.

Only what the model needs is compiled: TFLM's core, the kernels of the model's ops (registered one by one
with a ``MicroMutableOpResolver``), and CMSIS-NN's C sources (they compile in a fraction of a second each; the
linker keeps only the functions used). Object files are cached per core and flags (see
:func:`chipfit.firmware.toolchain.cache_root`), so the first firmware for a core takes about a minute and
the next ones a few seconds; a precompiled header of TFLM's flatbuffer schema cuts each C++ file from about 4
s to about 1 s while a batch of them is compiled.

>>> fw = build_firmware("kws_ref_model.tflite", "cortex-m4")  # doctest: +SKIP
>>> fw.elf.name, fw.ops[:2]  # doctest: +SKIP
('firmware.elf', ['CONV_2D', 'DEPTHWISE_CONV_2D'])
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chipfit.firmware import templates
from chipfit.firmware.cores import Core, get_core
from chipfit.firmware.sources import tflm_source
from chipfit.firmware.toolchain import FirmwareError, cache_root, gcc_version, require
from chipfit.graph.tflite_reader import tflite_bytes
from chipfit.logging import get_logger

_log = get_logger(__name__)
OBJ_REV = "1"  # bump when the flags change in a way the object cache key does not see
HARNESS_REV = "2"  # bump when the harness (templates) changes: cached images are relinked
COMMON = ("-O2", "-ffunction-sections", "-fdata-sections", "-DTF_LITE_STATIC_MEMORY", "-DCMSIS_NN")
CXX_ONLY = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-fno-use-cxa-atexit")
INCLUDES = ("", "third_party/flatbuffers/include", "third_party/gemmlowp", "third_party/ruy",
            "third_party/cmsis_nn", "third_party/cmsis_nn/Include", "third_party/cmsis/CMSIS/Core/Include")
CORE_DIRS = ("tensorflow/lite/micro", "tensorflow/lite/micro/arena_allocator",
             "tensorflow/lite/micro/memory_planner", "tensorflow/lite/micro/tflite_bridge",
             "tensorflow/lite/core/api", "tensorflow/lite/core/c", "tensorflow/lite/kernels",
             "tensorflow/lite/kernels/internal", "tensorflow/lite/kernels/internal/reference",
             "tensorflow/compiler/mlir/lite/core/api", "tensorflow/compiler/mlir/lite/schema")
CORE_SKIP = {"fake_micro_context.cc", "mock_micro_graph.cc", "test_helpers.cc", "test_helper_custom_ops.cc",
             "recording_micro_allocator.cc", "micro_profiler.cc", "system_setup.cc", "hexdump.cc"}
KERNEL_ALWAYS = ("tensorflow/lite/micro/kernels/kernel_util.cc",)
# kernels whose code spans more files than <name>.cc and <name>_common.cc
KERNEL_EXTRA = {
    "unidirectional_sequence_lstm": ("lstm_eval.cc", "lstm_eval_common.cc", "micro_tensor_utils.cc"),
    "svdf": ("micro_tensor_utils.cc",),
}
TIMEOUT_S = 600
PCH_MIN_FILES = 6


@dataclass(frozen=True)
class Firmware:
    """A built firmware: ``elf`` to run (QEMU) or flash; ``project`` holds its generated sources and a
    Makefile. ``compiled``/``reused``: object files compiled now / found in the cache."""

    elf: Path
    project: Path
    core: str
    ops: list[str]
    serial: bool
    arena_size: int
    input_bytes: int
    flash_bytes: int
    ram_bytes: int
    build_s: float
    compiled: int
    reused: int
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["elf"], d["project"] = str(self.elf), str(self.project)
        return d


# ---------------------------------------------------------------------------------------------------- the model

def model_facts(data: bytes, name: str = "model.tflite") -> tuple[list[str], int]:
    """The builtin op names of the model's operators (execution order) and its input bytes."""
    import numpy as np
    import tflite

    from chipfit.graph.tflite_reader import _opname

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise FirmwareError(f"'{name}' is not a TFLite flatbuffer (expected 'TFL3' at byte 4); the firmware runs "
                            f".tflite files (export one with `chipfit export` or LiteRT's converter).")
    m = tflite.Model.GetRootAsModel(data, 0)
    ops = [_opname(m, m.Subgraphs(s).Operators(k).OpcodeIndex())
           for s in range(m.SubgraphsLength()) for k in range(m.Subgraphs(s).OperatorsLength())]
    sg = m.Subgraphs(0)
    sizes = {tflite.TensorType.INT8: 1, tflite.TensorType.UINT8: 1, tflite.TensorType.INT16: 2,
             tflite.TensorType.FLOAT32: 4, tflite.TensorType.INT32: 4, tflite.TensorType.BOOL: 1,
             tflite.TensorType.INT64: 8}
    n = 0
    for i in range(sg.InputsLength()):
        t = sg.Tensors(sg.Inputs(i))
        n += int(np.prod(t.ShapeAsNumpy())) * sizes.get(t.Type(), 4) if t.ShapeLength() else sizes.get(t.Type(), 4)
    return ops, n


# ------------------------------------------------------------------------------------------ TFLM's op resolver

@functools.cache
def _resolver_table(tree: str) -> dict[str, tuple[str, str]]:
    """``BUILTIN -> (AddMethod, Register_FN)`` read from the tree's micro_mutable_op_resolver.h."""
    text = (Path(tree) / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    table: dict[str, tuple[str, str]] = {}
    for chunk in re.split(r"TfLiteStatus (?=Add\w+\()", text)[1:]:
        method = chunk.split("(", 1)[0]
        body = chunk[:800]
        b = re.search(r"AddBuiltin\(\s*BuiltinOperator_(\w+)", body)
        r = re.search(r"Register_(\w+)\(\)", body)
        if b and r and b.group(1) not in table:
            table[b.group(1)] = (method, r.group(1))
    return table


@functools.cache
def _registration_files(tree: str) -> dict[str, str]:
    """``REGISTER_NAME -> kernel source`` (CMSIS-NN's where it has one, else TFLM's reference kernel)."""
    root = Path(tree) / "tensorflow/lite/micro/kernels"
    found: dict[str, str] = {}
    pat = re.compile(r"TFLMRegistration\s*\*?\s*Register_(\w+)\s*\(\s*\)\s*\{")
    for folder in (root / "cmsis_nn", root):
        for f in sorted(folder.glob("*.cc")):
            for name in pat.findall(f.read_text(errors="replace")):
                found.setdefault(name, str(f.relative_to(tree)))
    return found


def kernel_sources(ops: list[str], tree: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The kernel sources (relative to ``tree``) for ``ops``, and the resolver calls ``(method, op)``.

    Raises :class:`FirmwareError` naming an op TFLM cannot register."""
    table, files = _resolver_table(str(tree)), _registration_files(str(tree))
    srcs: list[str] = list(KERNEL_ALWAYS)
    calls: list[tuple[str, str]] = []
    bad = sorted({o for o in ops if o not in table})
    if bad:
        raise FirmwareError(f"the model uses {', '.join(bad)}, which TFLM's MicroMutableOpResolver cannot "
                            f"register (expected builtin ops with an Add*() method in "
                            f"tensorflow/lite/micro/micro_mutable_op_resolver.h). Run it with the 'litert' "
                            f"runtime, or change the architecture so that op is not emitted.")
    kdir = "tensorflow/lite/micro/kernels"
    for op in dict.fromkeys(ops):
        method, reg = table[op]
        calls.append((method, op))
        src = files.get(reg)
        if src is None:
            raise FirmwareError(f"no kernel source defines Register_{reg}() for {op} under {tree}/{kdir} "
                                f"(expected a TFLM tree made with OPTIMIZED_KERNEL_DIR=cmsis_nn).")
        stem = Path(src).stem
        for cand in (src, f"{kdir}/{stem}_common.cc",
                     *(f"{kdir}/{x}" for x in KERNEL_EXTRA.get(stem, ()))):
            if (tree / cand).is_file() and cand not in srcs:
                srcs.append(cand)
    return srcs, calls


def core_sources(tree: Path) -> list[str]:
    out = []
    for d in CORE_DIRS:
        out += [str(p.relative_to(tree)) for p in sorted((tree / d).glob("*.cc")) if p.name not in CORE_SKIP]
    return out


def cmsis_nn_sources(tree: Path) -> list[str]:
    return [str(p.relative_to(tree)) for p in sorted((tree / "third_party/cmsis_nn/Source").rglob("*.c"))]


# ----------------------------------------------------------------------------------------------- compiling

def _flags(core: Core, tree: Path) -> list[str]:
    return [*core.cflags, *COMMON, *(f"-I{tree / i}" if i else f"-I{tree}" for i in INCLUDES)]


def object_cache(core: Core, tree: Path) -> Path:
    """The folder of ``core``'s objects: named by the core and a hash of flags, compiler and source tree."""
    key = {"core": core.name, "flags": [*core.cflags, *COMMON, *CXX_ONLY], "gcc": gcc_version(),
           "tree": str(tree), "rev": OBJ_REV}
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    d = cache_root() / f"{core.name}-{h}"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "key.json").is_file():
        (d / "key.json").write_text(json.dumps(key, indent=1))
    return d


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (two builds for one core wait for each other instead of racing)."""
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"{what} took over {TIMEOUT_S} s ({' '.join(cmd[:3])} ...); the machine may be "
                            f"overloaded: retry, or build with fewer other jobs running.") from None
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-25:])
        raise FirmwareError(f"{what} failed (exit {r.returncode}): {' '.join(cmd[:2])} ...\n{tail}")


def _obj_path(objdir: Path, rel: str) -> Path:
    return objdir / (rel + ".o")


def _stale(obj: Path, src: Path) -> bool:
    return not obj.is_file() or obj.stat().st_mtime < src.stat().st_mtime


def compile_sources(core: Core, tree: Path, rels: list[str], *, jobs: int | None = None,
                    extra_flags: tuple[str, ...] = ()) -> tuple[list[Path], int, int]:
    """Compile ``rels`` (paths under ``tree``) for ``core`` into the object cache, skipping objects that are
    newer than their source. Returns ``(objects, compiled, reused)``."""
    cache = object_cache(core, tree)
    objdir = cache / "obj"
    flags = _flags(core, tree) + list(extra_flags)
    jobs = jobs or max(1, min(len(os.sched_getaffinity(0)), 8))
    objs = [_obj_path(objdir, r) for r in rels]
    with _locked(cache):
        for left in cache.glob("chipfit-pch-*"):  # a batch killed mid-way (we hold the lock: nobody uses it)
            shutil.rmtree(left, ignore_errors=True)
        todo = [(r, o) for r, o in zip(rels, objs, strict=True) if _stale(o, tree / r)]
        if not todo:
            return objs, 0, len(rels)
        n_cxx = sum(1 for r, _ in todo if r.endswith(".cc"))
        pch_dir = Path(tempfile.mkdtemp(prefix="chipfit-pch-", dir=cache)) if n_cxx >= PCH_MIN_FILES else None
        try:
            _compile_all(todo, tree, flags, jobs, pch_dir)
        finally:
            if pch_dir is not None:  # ~250 MB: made per batch, never kept
                for f in pch_dir.iterdir():
                    f.unlink()
                pch_dir.rmdir()
    return objs, len(todo), len(rels) - len(todo)


def _compile_all(todo: list[tuple[str, Path]], tree: Path, flags: list[str], jobs: int,
                 pch_dir: Path | None) -> None:
    t0 = time.perf_counter()

    def cc(rel: str, obj: Path, use_pch: bool) -> None:
        obj.parent.mkdir(parents=True, exist_ok=True)
        tmp = obj.with_suffix(f".{os.getpid()}.tmp")
        if rel.endswith(".c"):
            cmd = ["arm-none-eabi-gcc", *flags, "-std=gnu11", "-c", str(tree / rel), "-o", str(tmp)]
        else:
            pch = ["-include", str(pch_dir / "chipfit_pch.h"), "-Winvalid-pch"] if use_pch and pch_dir else []
            cmd = ["arm-none-eabi-g++", *flags, *CXX_ONLY, *pch, "-c", str(tree / rel), "-o", str(tmp)]
        _run(cmd, f"compiling {rel}")
        os.replace(tmp, obj)

    cfiles = [(r, o) for r, o in todo if r.endswith(".c")]
    cxx = [(r, o) for r, o in todo if not r.endswith(".c")]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futs = []
        if pch_dir is not None:
            hdr = pch_dir / "chipfit_pch.h"
            hdr.write_text('#include "tensorflow/lite/schema/schema_generated.h"\n')
            pch_fut = pool.submit(_run, ["arm-none-eabi-g++", *flags, *CXX_ONLY, "-x", "c++-header", str(hdr),
                                         "-o", str(hdr) + ".gch"], "precompiling TFLM's schema header")
            futs += [pool.submit(cc, r, o, False) for r, o in cfiles]  # C files meanwhile
            pch_fut.result()
        else:
            futs += [pool.submit(cc, r, o, False) for r, o in cfiles]
        futs += [pool.submit(cc, r, o, True) for r, o in cxx]
        for f in futs:
            f.result()
    _log.info("compiled %d files in %.1f s (%d jobs)", len(todo), time.perf_counter() - t0, jobs)


# ------------------------------------------------------------------------------------------ the project

def _c_array(data: bytes) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    return ",\n  ".join(rows)


def write_project(out: Path, data: bytes, name: str, core: Core, *, serial: bool = False,
                  arena_size: int | None = None, tree: Path | None = None) -> dict[str, Any]:
    """Write the firmware's own sources into ``out/src`` (model as a C array, harness, board layer, startup,
    linker script, config) and a Makefile a user can build the project with; returns the project's facts."""
    tree = tree or tflm_source()
    ops, input_bytes = model_facts(data, name)
    ksrcs, calls = kernel_sources(ops, tree)
    arena = int(arena_size or min(1 << 20, core.ram[1] // 2))
    src = out / "src"
    src.mkdir(parents=True, exist_ok=True)
    section = "__attribute__((section(\".chipfit_model\"), aligned(16)))"
    (src / "model_data.cc").write_text(
        f"// Generated by chipfit firmware from {name} ({len(data)} bytes)\n"
        f"extern \"C\" {{\n{section} extern const unsigned char chipfit_model[] = {{\n  {_c_array(data)}\n}};\n"
        f"extern const unsigned int chipfit_model_len = {len(data)};\n}}\n")
    adds = " ".join(f"(r).{m}();" for m, _ in calls)
    (src / "chipfit_config.h").write_text(
        f"// Generated by chipfit firmware: {name} on {core.name} ({core.qemu_machine} in QEMU)\n#pragma once\n"
        f"#define CHIPFIT_N_OPS {len(ops)}\n#define CHIPFIT_N_RESOLVER_OPS {max(1, len(calls))}\n"
        f"#define CHIPFIT_ADD_OPS(r) do {{ {adds} }} while (0)  // {', '.join(op for _, op in calls)}\n"
        f"#define CHIPFIT_ARENA_SIZE {arena}\n#define CHIPFIT_INPUT_BYTES {input_bytes}\n"
        f"#define CHIPFIT_INPUT_FILE \"input.bin\"\n#define CHIPFIT_SERIAL {int(serial)}\n"
        f"#define CHIPFIT_UART_BASE {core.uart_base:#010x}u\n")
    (src / "main.cc").write_text(templates.HARNESS_CC)
    (src / "chipfit_board.h").write_text(templates.BOARD_H)
    (src / "board.c").write_text(templates.BOARD_C)
    (src / "startup.c").write_text(templates.STARTUP_C)
    (out / "linker.ld").write_text(templates.linker_script(core.flash, core.ram, core.model_region))
    tflm_srcs = core_sources(tree) + ksrcs + cmsis_nn_sources(tree)
    facts = {"model": name, "core": core.name, "qemu_machine": core.qemu_machine, "ops": ops,
             "resolver": [op for _, op in calls], "arena_size": arena, "input_bytes": input_bytes,
             "serial": serial, "tflm": str(tree), "tflm_sources": tflm_srcs,
             "cflags": [*core.cflags, *COMMON], "cxxflags": list(CXX_ONLY), "gcc": gcc_version()}
    (out / "firmware.json").write_text(json.dumps(facts, indent=1))
    (out / "Makefile").write_text(_makefile(core, serial, tflm_srcs))
    return facts


def _makefile(core: Core, serial: bool, tflm_srcs: list[str]) -> str:
    lines = "\\\n  ".join(tflm_srcs)
    specs = "--specs=nosys.specs" if serial else "--specs=rdimon.specs"
    return f"""# Generated by chipfit firmware: `make TFLM=/path/to/tflm` builds build/firmware.elf for {core.name}.
TFLM ?= {tflm_source()}
CFLAGS := {' '.join(core.cflags)} {' '.join(COMMON)} -Isrc \\
  $(addprefix -I$(TFLM)/,. {' '.join(i for i in INCLUDES if i)})
CXXFLAGS := $(CFLAGS) {' '.join(CXX_ONLY)}
TFLM_SRCS := {lines}
OBJS := $(addprefix build/tflm/,$(addsuffix .o,$(TFLM_SRCS))) \\
  build/main.o build/model_data.o build/board.o build/startup.o

build/firmware.elf: $(OBJS) linker.ld
\tarm-none-eabi-g++ {' '.join(core.cflags)} {specs} -nostartfiles -Tlinker.ld -Wl,--gc-sections $(OBJS) -o $@
build/tflm/%.cc.o: $(TFLM)/%.cc
\t@mkdir -p $(dir $@)
\tarm-none-eabi-g++ $(CXXFLAGS) -c $< -o $@
build/tflm/%.c.o: $(TFLM)/%.c
\t@mkdir -p $(dir $@)
\tarm-none-eabi-gcc $(CFLAGS) -c $< -o $@
build/%.o: src/%.cc src/chipfit_config.h
\t@mkdir -p build
\tarm-none-eabi-g++ $(CXXFLAGS) -c $< -o $@
build/%.o: src/%.c src/chipfit_config.h
\t@mkdir -p build
\tarm-none-eabi-gcc $(CFLAGS) -c $< -o $@
run: build/firmware.elf
\tqemu-system-arm -M {core.qemu_machine} -cpu {core.qemu_cpu} -nographic -semihosting -icount shift=0 -kernel $<
"""


# ------------------------------------------------------------------------------------------------ building

def build_firmware(model: str | Path | bytes, core: str | Core = "cortex-m4", *, out: str | Path | None = None,
                   serial: bool = False, arena_size: int | None = None, jobs: int | None = None) -> Firmware:
    """Generate the firmware project for ``model`` on ``core`` and build it. With ``out`` None, the project
    lives in the cache (named by the model's hash), and an already built image is reused as is."""
    require(qemu=False)
    c = core if isinstance(core, Core) else get_core(core)
    tree = tflm_source()
    data, name = tflite_bytes(model)
    t0 = time.perf_counter()
    cache = object_cache(c, tree)
    if out is None:
        key = hashlib.sha256(data + f"|{serial}|{arena_size}|{HARNESS_REV}".encode()).hexdigest()[:16]
        proj = cache / "fw" / key
    else:
        proj = Path(out)
    proj.mkdir(parents=True, exist_ok=True)
    with _locked(proj) if out is None else contextlib.nullcontext():  # two builds of one image wait in turn
        done = proj / "firmware.done.json"
        if out is None and done.is_file() and (proj / "build" / "firmware.elf").is_file():
            d = json.loads(done.read_text())
            d.update(elf=Path(d["elf"]), project=Path(d["project"]), build_s=time.perf_counter() - t0,
                     compiled=0, reused=d["compiled"] + d["reused"])
            return Firmware(**d)
        return _build(proj, data, name, c, tree, t0, serial=serial, arena_size=arena_size, jobs=jobs,
                      cached=out is None)


def _build(proj: Path, data: bytes, name: str, c: Core, tree: Path, t0: float, *, serial: bool,
           arena_size: int | None, jobs: int | None, cached: bool) -> Firmware:
    facts = write_project(proj, data, name, c, serial=serial, arena_size=arena_size, tree=tree)
    objs, n_new, n_old = compile_sources(c, tree, facts["tflm_sources"], jobs=jobs)
    build = proj / "build"
    build.mkdir(exist_ok=True)
    flags = [*_flags(c, tree), f"-I{proj / 'src'}"]
    own = []
    for f in ("main.cc", "model_data.cc", "board.c", "startup.c"):
        o = build / (f + ".o")
        cmd = (["arm-none-eabi-gcc", *flags, "-std=gnu11"] if f.endswith(".c")
               else ["arm-none-eabi-g++", *flags, *CXX_ONLY])
        own.append(([*cmd, "-c", str(proj / "src" / f), "-o", str(o)], f, o))
    with ThreadPoolExecutor(max_workers=jobs or 2) as pool:
        for fut in [pool.submit(_run, cmd, f"compiling the firmware's {f}") for cmd, f, _ in own]:
            fut.result()
    lib = build / "libtflm.a"
    lib.unlink(missing_ok=True)
    _run(["arm-none-eabi-ar", "rcs", str(lib), *map(str, objs)], "archiving TFLM's objects")
    elf = build / "firmware.elf"
    specs = "--specs=nosys.specs" if serial else "--specs=rdimon.specs"
    _run(["arm-none-eabi-g++", *c.cflags, specs, "-nostartfiles", f"-T{proj / 'linker.ld'}",
          "-Wl,--gc-sections", f"-Wl,-Map={build / 'firmware.map'}", *(str(o) for _, _, o in own), str(lib),
          "-o", str(elf)], f"linking {name} for {c.name}")
    flash, ram = _sizes(elf)
    fw = Firmware(elf=elf, project=proj, core=c.name, ops=facts["ops"], serial=serial,
                  arena_size=facts["arena_size"], input_bytes=facts["input_bytes"], flash_bytes=flash,
                  ram_bytes=ram, build_s=time.perf_counter() - t0, compiled=n_new, reused=n_old,
                  sources=facts["tflm_sources"])
    if cached:
        (proj / "firmware.done.json").write_text(json.dumps(fw.to_dict()))
    _log.info("built %s for %s in %.1f s (%d objects compiled, %d from the cache)", name, c.name, fw.build_s,
              n_new, n_old)
    return fw


def _sizes(elf: Path) -> tuple[int, int]:
    """(flash, ram) bytes of an image: text + data, and data + bss (``arm-none-eabi-size``)."""
    try:
        r = subprocess.run(["arm-none-eabi-size", "-B", str(elf)], capture_output=True, text=True, timeout=60)
        text, data, bss = (int(x) for x in r.stdout.splitlines()[1].split()[:3])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return 0, 0
    return text + data, data + bss
