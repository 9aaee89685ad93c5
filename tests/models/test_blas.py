"""cxlib links PyTensor to an optimized BLAS, or says in one line what to install."""

import json
import os
import subprocess
import sys

import pytest

from cxlib.models.blas import MISSING_BLAS_HINT, BlasChoice, choose_blas, find_openblas

# Compile a matrix product (a BLAS op in PyTensor's C backend) and print the ldflags used.
_COMPILE = (
    "import numpy as np, pytensor, pytensor.tensor as pt; "
    "a = pt.matrix('a'); f = pytensor.function([a], a @ a.T); "
    "assert np.allclose(f(np.arange(6.0).reshape(3, 2)), [[1, 3, 5], [3, 13, 23], [5, 23, 41]]); "
    "print(repr(pytensor.config.blas__ldflags))"
)


def _python(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "PYTENSOR_FLAGS"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300
    )


@pytest.mark.parametrize(
    ("facts", "want"),
    [
        (
            {"user_chose": True, "platform": "linux", "in_conda": False, "openblas": "-lopenblas"},
            BlasChoice("user"),
        ),
        (
            {"user_chose": False, "platform": "darwin", "in_conda": False, "openblas": None},
            BlasChoice("pytensor"),
        ),
        (
            {"user_chose": False, "platform": "linux", "in_conda": True, "openblas": "-lopenblas"},
            BlasChoice("pytensor"),
        ),
        (
            {"user_chose": False, "platform": "linux", "in_conda": False, "openblas": "-lopenblas"},
            BlasChoice("openblas", "-lopenblas"),
        ),
        (
            {"user_chose": False, "platform": "linux", "in_conda": False, "openblas": None},
            BlasChoice("none", ""),
        ),
    ],
)
def test_choice_rule(facts, want):
    assert choose_blas(**facts) == want


def test_find_openblas_needs_the_linkable_library(tmp_path):
    (tmp_path / "libopenblas.so.0").write_bytes(b"")
    assert find_openblas([tmp_path]) is None  # the runtime library alone cannot be linked
    (tmp_path / "libopenblas.so").write_bytes(b"")
    assert find_openblas([tmp_path]) == f"-L{tmp_path} -Wl,-rpath,{tmp_path} -lopenblas"


@pytest.mark.skipif(find_openblas() is None, reason="no system OpenBLAS (make test installs it)")
def test_models_link_openblas_and_print_no_blas_warning():
    out = _python("import cxlib.models; " + _COMPILE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr(find_openblas())
    assert "BLAS" not in out.stderr


def test_the_users_own_choice_is_kept():
    out = _python("import cxlib.models; " + _COMPILE, PYTENSOR_FLAGS="blas__ldflags=")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "''"
    assert "BLAS" not in out.stderr


def test_without_a_blas_one_short_line_says_what_to_install():
    """No BLAS found: NumPy's fallback, PyTensor's five-line warning replaced by one line."""
    code = (
        "import cxlib.models.blas as b; "
        # this process found OpenBLAS on import: forget that, and find none
        "b.find_openblas = lambda dirs=None: None; "
        "print(b.configure_blas(again=True).source); " + _COMPILE
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["none", "''"]
    blas_lines = [line for line in out.stderr.splitlines() if "BLAS" in line]
    assert blas_lines == [MISSING_BLAS_HINT]


def test_pytensor_imported_first_still_gets_the_choice():
    """A notebook that imports PyMC before cxlib: the choice reaches PyTensor's config."""
    out = _python("import pytensor; import cxlib.models; " + _COMPILE)
    assert out.returncode == 0, out.stderr
    assert "BLAS" not in out.stderr
    if find_openblas() is not None:
        assert out.stdout.strip() == repr(find_openblas())


@pytest.mark.skipif(find_openblas() is None, reason="no system OpenBLAS (make test installs it)")
def test_the_linked_openblas_runs_on_one_thread():
    """Threads per chain only compete with the other chains (bench_blas.py: 24 s vs 15 s)."""
    code = (
        "import json, cxlib.models; " + _COMPILE.replace("; print(", "; (") + "; "
        "from threadpoolctl import threadpool_info; "
        "print(json.dumps({i['filepath']: i['num_threads'] for i in threadpool_info() "
        "if i['internal_api'] == 'openblas'}))"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    system = {path: n for path, n in threads.items() if "site-packages" not in path}
    assert list(system.values()) == [1], threads  # one instance, shared with PyTensor
    out = _python(code, OPENBLAS_NUM_THREADS="2")  # the user's setting wins
    assert out.returncode == 0, out.stderr
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    assert [n for path, n in threads.items() if "site-packages" not in path] == [2]


def test_deciding_again_is_not_fooled_by_its_own_flag():
    code = (
        "import os, cxlib.models.blas as b; first = b.configure_blas(); "
        "again = b.configure_blas(again=True); "
        "print(first == again, os.environ['PYTENSOR_FLAGS'].count('blas__ldflags'))"
    )
    out = _python(code, PYTENSOR_FLAGS="floatX=float64")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "1"]  # decided the same; one entry, not two
