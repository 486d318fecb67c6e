"""The dependency policy of plugin environments (plughost.envs.policy, .sdists): which lines
are refused, which names are warned about as look-alikes, and the plain message uv's
wheels-only failure becomes."""

from __future__ import annotations

import pytest

from plughost.envs import BadRequirement
from plughost.envs.policy import (
    check_dependencies,
    look_alike,
    one_edit_apart,
    refusal,
    typo_warnings,
)
from plughost.envs.popular import POPULAR_PACKAGES
from plughost.envs.sdists import file_index_dir, only_binary_message

UV_NO_BUILD = """error: No solution found when resolving dependencies:
  cause: Because evil-pkg==1.0 has no usable wheels and only evil-pkg==1.0 is available, we
         can conclude that all versions of evil-pkg cannot be used.
hint: Wheels are required for `evil-pkg` because building from source is disabled for all
      packages (i.e., with `--no-build`)"""


@pytest.mark.parametrize(
    "line",
    [
        "pkg @ https://example.invalid/pkg.tar.gz",
        "pkg@git+https://example.invalid/pkg",
        "git+https://example.invalid/pkg.git",
        "hg+https://example.invalid/pkg",
        "https://example.invalid/pkg-1.0.tar.gz",
        "./local",
        "../up",
        "/abs/path",
        "~/home",
        ".",
        "C:\\pkgs\\evil",
        "file:///opt/pkg",
        "file:pkg",
        "pkg-1.0-py3-none-any.whl",
        "pkg-1.0.tar.gz",
        "-e .",
        "--editable=git+https://x",
        "--index-url https://evil.invalid/simple",
        "--extra-index-url=https://evil.invalid/simple",
        "-i https://evil.invalid/simple",
        "-f ./wheels",
        "--find-links https://evil.invalid",
        "-r other.txt",
        "-c constraints.txt",
        "--trusted-host evil.invalid",
    ],
)
def test_urls_paths_and_options_are_refused_naming_the_line(line: str) -> None:
    assert refusal(line) is not None
    with pytest.raises(BadRequirement, match="is refused") as caught:
        check_dependencies(["numpy", line])
    assert repr(line.strip()) in str(caught.value)


@pytest.mark.parametrize(
    "line",
    [
        "numpy",
        "scikit-learn>=1.3",
        "pkg[extra]==1.0 ; python_version >= '3.8'",
        "Foo_Bar.baz~=2.1",
        "torch",
        "",
    ],
)
def test_plain_requirements_pass(line: str) -> None:
    assert refusal(line) is None
    check_dependencies([line])


@pytest.mark.parametrize(
    ("a", "b", "close"),
    [
        ("requets", "requests", True),  # deletion
        ("numpyy", "numpy", True),  # insertion
        ("pandsa", "pandas", True),  # swap of neighbours
        ("nunpy", "numpy", True),  # substitution
        ("numpy", "numpy", False),
        ("nmupyy", "numpy", False),  # two edits
        ("abc", "cba", False),
        ("torch", "torchvision", False),
    ],
)
def test_one_edit_apart_is_damerau_levenshtein_one(a: str, b: str, close: bool) -> None:
    assert one_edit_apart(a, b) is close
    assert one_edit_apart(b, a) is close


def test_look_alikes_are_found_after_normalisation_and_exact_names_are_not() -> None:
    assert look_alike("requets") == "requests"
    assert look_alike("Numpyy") == "numpy"
    assert look_alike("pandsa") == "pandas"
    assert look_alike("scikit_learm") == "scikit-learn"
    for name in ("requests", "numpy", "pandas", "Scikit_Learn", "inflection", "tabulate"):
        assert look_alike(name) is None, name
    assert 180 <= len(POPULAR_PACKAGES) <= 320


def test_warnings_name_the_dependency_and_the_package_it_imitates() -> None:
    warnings = typo_warnings(["numpy>=1", "requets==2.0", "inflection", "-e ."])
    expected = (
        "warning: dependency 'requets' is one edit away from the popular package 'requests'; "
        "check its spelling (look-alike names are a common way to ship malware)"
    )
    assert warnings == [expected]


def test_uv_s_wheels_only_failure_becomes_a_plain_refusal_naming_the_package() -> None:
    message = only_binary_message(UV_NO_BUILD, ["evil-pkg"])
    assert message is not None
    assert message.startswith("refused: evil-pkg exists only as a source distribution")
    assert "PLUGHOST_PLUGIN_ONLY_BINARY" in message
    assert only_binary_message("error: evil-pkg was not found in the package registry", []) is None


def test_a_file_index_is_bound_with_the_folder_beside_simple(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "simple").mkdir()
    assert file_index_dir((tmp_path / "simple").as_uri()) == tmp_path.resolve()
    assert file_index_dir("https://pypi.org/simple") is None
    assert file_index_dir((tmp_path / "missing").as_uri()) is None
