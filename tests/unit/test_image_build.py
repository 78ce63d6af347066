"""The two ways of building the puller's image agree: Containerfile (with an engine) and
hack/build-image-rootfs.sh (mmdebstrap + crane, without one) give the same entrypoint, cmd,
user, environment and labels; hack/build-image.sh falls back to the script when no engine
answers. No network, no root, no engine: the files are parsed, and the scripts only run as far
as their argument checks (or against stubs)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
SCRIPT = ROOT / "hack" / "build-image-rootfs.sh"


def final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile's last stage, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in CONTAINERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def containerfile_config() -> dict:
    config: dict = {"env": {}, "labels": {}}
    for keyword, args in final_stage():
        if keyword == "ENTRYPOINT":
            config["entrypoint"] = json.loads(args)
        elif keyword == "CMD":
            config["cmd"] = json.loads(args)
        elif keyword == "USER":
            config["user"] = args
        elif keyword in ("ENV", "LABEL"):
            pairs = dict(token.split("=", 1) for token in shlex.split(args))
            config["env" if keyword == "ENV" else "labels"].update(pairs)
    return config


def script_config() -> dict:
    """The script's IMAGE_* settings, evaluated by bash itself (only that block of the file)."""
    text = SCRIPT.read_text()
    block = re.search(r"^IMAGE_ENTRYPOINT=.*?^IMAGE_PLATFORM=.*?$", text, flags=re.M | re.S)
    assert block, "hack/build-image-rootfs.sh has no IMAGE_ENTRYPOINT ... IMAGE_PLATFORM block"
    dump = (
        block.group(0)
        + '\nprintf "%s\\0" "$IMAGE_ENTRYPOINT" "$IMAGE_CMD" "$IMAGE_USER" "$IMAGE_PLATFORM"'
        + '\nprintf "env\\0"; printf "%s\\0" "${IMAGE_ENV[@]}"'
        + '\nprintf "labels\\0"; printf "%s\\0" "${IMAGE_LABELS[@]}"\n'
    )
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", dump], capture_output=True, text=True, check=True
    ).stdout
    fields = out.split("\0")[:-1]
    entrypoint, cmd, user, platform = fields[:4]
    env_at, labels_at = fields.index("env"), fields.index("labels")
    return {
        "entrypoint": [entrypoint],
        "cmd": [cmd],
        "user": user,
        "platform": platform,
        "env": dict(item.split("=", 1) for item in fields[env_at + 1 : labels_at]),
        "labels": dict(item.split("=", 1) for item in fields[labels_at + 1 :]),
    }


def test_entrypoint_cmd_and_user_agree():
    ours, theirs = containerfile_config(), script_config()
    assert ours["entrypoint"] == theirs["entrypoint"] == ["imagepuller"]
    assert ours["cmd"] == theirs["cmd"] == ["run"]
    # Numeric, so that Kubernetes can check runAsNonRoot.
    assert ours["user"] == theirs["user"] == "65532:65532"


def test_environment_agrees():
    ours, theirs = containerfile_config(), script_config()
    assert ours["env"] == theirs["env"]
    assert theirs["env"]["PYTHONUNBUFFERED"] == "1"
    assert theirs["env"]["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "/usr/local/bin" in theirs["env"]["PATH"].split(":")


def test_labels_agree():
    ours, theirs = containerfile_config(), script_config()
    assert ours["labels"] == theirs["labels"]
    assert theirs["labels"]["org.opencontainers.image.licenses"] == "EPL-2.0"


def test_both_build_on_debian_bookworm_with_its_python3():
    froms = [args for keyword, args in final_stage() if keyword == "FROM"]
    assert froms == ["docker.io/library/debian:bookworm-slim"]
    assert re.search(r'^SUITE="bookworm"$', SCRIPT.read_text(), flags=re.M)
    assert script_config()["platform"] == "linux/amd64"


def test_both_put_the_static_sleep_at_usr_bin_sleep():
    assert "COPY --from=sleep /out/sleep /usr/bin/sleep" in CONTAINERFILE.read_text()
    assert '"${app}/usr/bin/sleep"' in SCRIPT.read_text()


def test_crane_is_looked_up_where_build_node_stack_puts_it():
    # The script cannot call hack/build-node-stack.sh to ask (it would build the whole stack),
    # so it repeats the directory's formula; the two must not drift apart.
    def node_stack_dir(path: Path, pattern: str) -> str:
        found = re.search(pattern, path.read_text(), flags=re.M)
        assert found, f"{path.name}: no node-stack directory found"
        return found.group(1)

    theirs = node_stack_dir(
        ROOT / "hack" / "build-node-stack.sh", r'^BIN_DIR="\$\{CACHE_ROOT\}/node-stack/(.*)"$'
    )
    ours = node_stack_dir(SCRIPT, r'local node_stack="\$\{cache_root\}/node-stack/(.*)"$')
    assert ours == theirs


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess:
    # bash by its full path: some tests give the script a PATH without it.
    bash = shutil.which("bash")
    assert bash
    return subprocess.run([bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_the_script_asks_where_the_image_goes():
    result = run_script({"PATH": os.environ["PATH"], "HOME": "/nonexistent"})
    assert result.returncode == 1
    assert "IMAGE=" in result.stderr and "OUTPUT=" in result.stderr
    assert result.stdout == ""


def test_a_missing_crane_names_build_node_stack(tmp_path):
    # A PATH with only what the script needs up to its crane lookup (and no crane).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "basename"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = run_script(
        {
            "PATH": str(bin_dir),
            "HOME": str(tmp_path),
            "IMAGEPULLER_CACHE": str(tmp_path / "cache"),
            "OUTPUT": str(tmp_path / "image.tar"),
        }
    )
    assert result.returncode == 1
    assert "crane not found" in result.stderr
    assert "bash hack/build-node-stack.sh" in result.stderr
    assert not (tmp_path / "cache").exists(), "nothing may be built before crane is found"


def test_build_image_falls_back_to_the_script_without_an_engine(tmp_path):
    # A copy of hack/build-image.sh beside a stub build-image-rootfs.sh, and podman and docker
    # whose `info` fails as a client without a daemon does.
    hack = tmp_path / "hack"
    hack.mkdir()
    shutil.copy(ROOT / "hack" / "build-image.sh", hack / "build-image.sh")
    (hack / "build-image-rootfs.sh").write_text('echo "stub IMAGE=$IMAGE OUTPUT=$OUTPUT"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for engine in ("podman", "docker"):
        (bin_dir / engine).write_text(
            "#!/bin/sh\necho 'Cannot connect to the daemon' >&2\nexit 1\n"
        )
        (bin_dir / engine).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}

    result = subprocess.run(
        ["bash", str(hack / "build-image.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "no container engine is available (tried: podman docker" in result.stderr
    assert "falling back to hack/build-image-rootfs.sh" in result.stderr
    tarball = tmp_path / "build" / "kubernetes-image-puller.tar"
    assert result.stdout == f"stub IMAGE=localhost/kubernetes-image-puller:dev OUTPUT={tarball}\n"

    forced = subprocess.run(
        ["bash", str(hack / "build-image.sh")],
        env={**env, "CONTAINER_ENGINE": "docker", "IMAGE": "reg.test/p:1", "OUTPUT": "/x.tar"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "(tried: docker;" in forced.stderr
    assert forced.stdout == "stub IMAGE=reg.test/p:1 OUTPUT=/x.tar\n"
