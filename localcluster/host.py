"""What a real node changes on this machine, written down before the change and put back after.

A kubelet and containerd are not contained the way kwok is: the kubelet sets kernel sysctls,
bind-mounts its root directory rshared, creates a cgroup tree in every hierarchy and leaves
symlinks in /var/log/containers; containerd mounts overlays, network namespaces and tmpfs
volumes; the CNI bridge plugin creates a bridge and veth pairs, and libcni keeps results in
/var/lib/cni. Everything else is kept inside the cluster's directories by configuration.

The record is a JSON file in the cluster's directory, written *before* anything is changed, so
that ``python -m localcluster down`` can put the machine back even when the process that started
the nodes died without cleaning up. ``restore()`` is idempotent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

RECORD = "host-changes.json"

# The sysctls the kubelet sets at start (setupKernelTunables in pkg/kubelet/cm, v1.37), and the
# one the CNI bridge plugin sets for a gateway bridge (ip_forward).
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
)
# Fixed paths a kubelet or libcni creates whatever their configuration says (the device
# plugins' socket directory, libcni's cache, the legacy log links): shared by every real node
# on the machine, so removed by the last cluster to leave, and only when none was there first.
SHARED_PATHS = (Path("/var/lib/kubelet"), Path("/var/lib/cni"), Path("/var/log/containers"))
LEGACY_CONTAINER_LOGS = Path("/var/log/containers")
CNI_CACHE = Path("/var/lib/cni")


def read_sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def cgroup_hierarchies() -> list[Path]:
    """Mount points of the cgroup (v1) and cgroup2 hierarchies, from /proc/self/mountinfo."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        if after.split()[0] in ("cgroup", "cgroup2"):
            found.append(Path(_unescape(before.split()[4])))
    return found


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    return field.encode().decode("unicode_escape")


def mounts_under(directories: list[Path]) -> list[Path]:
    """Mount points at or below any of ``directories``, deepest first."""
    prefixes = [str(Path(d).resolve()) for d in directories]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            points.append(Path(point))
    return sorted(set(points), key=lambda p: len(p.parts), reverse=True)


class MachineRecord:
    """The machine's own values of the kubelet's sysctls, the shared paths that were not there,
    and the clusters whose kubelets may have changed them: ``/run/imagepuller/sysctls.json``
    (tmpfs: a reboot resets both), read and written under an exclusive lock. Two clusters with
    real nodes at once (a test run and a developer's) then put back the machine's values, not
    each other's kubelets'; the values are written back inside the lock (``put_back``)."""

    directory = Path("/run/imagepuller")

    def __enter__(self) -> MachineRecord:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.directory / "sysctls.lock", "w")  # noqa: SIM115 - held until exit
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.path = self.directory / "sysctls.json"
        try:
            self.state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.state = {"originals": {}, "holders": []}
        # A holder whose record is gone was removed without putting anything back.
        self.state["holders"] = [h for h in self.state["holders"] if (Path(h) / RECORD).exists()]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.state["holders"]:
            self.path.write_text(json.dumps(self.state, indent=2))
        else:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    def join(self, cluster: str) -> dict[str, str]:
        """The machine's values: read now when no other cluster holds them."""
        if not self.state["holders"]:
            self.state["originals"] = {
                name: value for name in KUBELET_SYSCTLS if (value := read_sysctl(name)) is not None
            }
            self.state["created"] = [str(p) for p in SHARED_PATHS if not p.exists()]
        if cluster not in self.state["holders"]:
            self.state["holders"].append(cluster)
        return dict(self.state["originals"])

    def leave(self, cluster: str, recorded: dict[str, str]) -> dict[str, str] | None:
        """The values to put back now: the machine's when ``cluster`` was the last holder,
        None while another cluster still holds them (its kubelets may still run)."""
        others = [h for h in self.state["holders"] if h != cluster]
        self.state["holders"] = others
        if others:
            return None
        return dict(self.state["originals"] or recorded)

    def put_back(self, values: dict[str, str]) -> list[str]:
        """Write ``values`` and remove the shared paths none was there for (inside the lock, so
        a cluster joining now reads the machine's values, not a kubelet's)."""
        problems = []
        for name, value in values.items():
            if read_sysctl(name) != value:
                try:
                    (Path("/proc/sys") / name).write_text(value)
                except OSError as exc:
                    problems.append(f"sysctl {name}: {exc}")
        for path in self.state.get("created", []):
            shutil.rmtree(path, ignore_errors=True)
        return problems


class HostChanges:
    """The record of one cluster's real nodes: sysctls as they were, and what is theirs."""

    def __init__(self, cluster_dir: Path):
        self.path = Path(cluster_dir) / RECORD
        self.data: dict[str, Any] = {
            "sysctls": {},
            "directories": [],
            "cgroup_roots": [],
            "links": [],
            "addresses": [],
            "cni_networks": [],
            "scratch": [],
        }

    @classmethod
    def load(cls, cluster_dir: Path) -> HostChanges | None:
        record = cls(cluster_dir)
        try:
            record.data.update(json.loads(record.path.read_text()))
        except (OSError, ValueError):
            return None
        return record

    def note(self, key: str, value: str) -> None:
        """Remember that ``value`` (a directory, cgroup root, link or network) is ours."""
        if value not in self.data[key]:
            self.data[key].append(value)
        self._save()

    def note_sysctls(self) -> None:
        """The values before any kubelet of ours started. Sysctls belong to the machine, not
        to one cluster: while another cluster's kubelet runs, the values now are that kubelet's,
        so the machine's own are kept in one machine-wide record with the clusters holding it
        (see MachineRecord); the first cluster writes them, the last one puts them back."""
        with MachineRecord() as machine:
            originals = machine.join(str(self.path.parent))
        for name, value in originals.items():
            self.data["sysctls"].setdefault(name, value)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)

    def restore(self) -> list[str]:
        """Put the machine back; returns what could not be put back (empty when all was)."""
        problems: list[str] = []
        directories = [Path(d) for d in self.data["directories"]]
        # Normally nothing is left running; after a hard kill of whoever started the nodes, the
        # containers (in our cgroups) and containerd's shims (serving sockets in our
        # directories) are, and would keep mounts and cgroups busy.
        problems += _kill(self._leftover_processes(directories))
        # Deepest first: a volume inside a pod directory inside the kubelet's rshared root.
        for point in mounts_under(directories):
            result = subprocess.run(["umount", str(point)], capture_output=True, text=True)
            if result.returncode != 0:
                lazy = subprocess.run(["umount", "-l", str(point)], capture_output=True, text=True)
                if lazy.returncode != 0:
                    problems.append(f"mount {point}: {lazy.stderr.strip()}")
        for root in self.data["cgroup_roots"]:
            for hierarchy in cgroup_hierarchies():
                problems += _remove_cgroup_tree(hierarchy / root.lstrip("/"))
        for link in self.data["links"]:
            if Path(f"/sys/class/net/{link}").exists():
                deleted = subprocess.run(["ip", "link", "delete", link], capture_output=True)
                if deleted.returncode != 0:
                    problems.append(f"link {link}: {deleted.stderr.decode().strip()}")
        for address in self.data["addresses"]:  # "10.128.0.1/32 dev lo"
            ip, _, device = address.partition(" dev ")
            shown = subprocess.run(
                ["ip", "-o", "addr", "show", "dev", device], capture_output=True, text=True
            ).stdout
            if f" {ip} " in shown:
                removed = subprocess.run(
                    ["ip", "addr", "del", ip, "dev", device], capture_output=True, text=True
                )
                if removed.returncode != 0:
                    problems.append(f"address {address}: {removed.stderr.strip()}")
        problems += self._remove_files(directories)
        if self.data["sysctls"]:
            with MachineRecord() as machine:
                originals = machine.leave(str(self.path.parent), self.data["sysctls"])
                if originals is not None:
                    problems += machine.put_back(originals)
        if not problems:
            for directory in self.data.get("scratch", []):
                shutil.rmtree(directory, ignore_errors=True)
            # Put back once: a second restore (down after the supervisor's own) must not write
            # the values again over a kubelet another cluster started since.
            self.data["sysctls"] = {}
            if self.path.exists():
                self._save()
        return problems

    def _leftover_processes(self, directories: list[Path]) -> set[int]:
        pids: set[int] = set()
        for root in self.data["cgroup_roots"]:
            for hierarchy in cgroup_hierarchies():
                for procs in (hierarchy / root.lstrip("/")).rglob("cgroup.procs"):
                    with contextlib.suppress(OSError, ValueError):
                        pids.update(int(p) for p in procs.read_text().split())
        prefixes = tuple(str(d.resolve()) + "/" for d in directories)
        inodes = set()
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) >= 8 and fields[7].startswith(prefixes):
                    inodes.add(f"socket:[{fields[6]}]")
        if inodes:
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    for fd in (proc / "fd").iterdir():
                        with contextlib.suppress(OSError):
                            if os.readlink(fd) in inodes:
                                pids.add(int(proc.name))
                                break
        pids.discard(os.getpid())
        return pids

    def _remove_files(self, directories: list[Path]) -> list[str]:
        """Symlinks the kubelet left in /var/log/containers, libcni's cached results."""
        problems = []
        prefixes = tuple(str(d.resolve()) + "/" for d in directories)
        with contextlib.suppress(OSError):
            for entry in LEGACY_CONTAINER_LOGS.iterdir():
                with contextlib.suppress(OSError):
                    if entry.is_symlink() and os.readlink(entry).startswith(prefixes):
                        entry.unlink()
        # libcni's cached results of our networks, and of containerd's own loopback network
        # (named cni-loopback whoever runs it: ours are told apart by their netns path).
        with contextlib.suppress(OSError):
            for leftover in (CNI_CACHE / "results").iterdir():
                with contextlib.suppress(OSError):
                    ours = leftover.name.startswith(
                        tuple(f"{n}-" for n in self.data["cni_networks"])
                    ) or any(p in leftover.read_text(errors="replace") for p in prefixes)
                    if ours:
                        try:
                            leftover.unlink()
                        except OSError as exc:
                            problems.append(f"file {leftover}: {exc}")
        return problems


def _remove_cgroup_tree(top: Path) -> list[str]:
    if not top.is_dir():
        return []
    problems = []
    # rmdir only: a cgroup directory is removed with rmdir when it has no processes and no
    # children; its control files go with it.
    for directory in sorted(
        (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        with contextlib.suppress(FileNotFoundError):
            try:
                directory.rmdir()
            except OSError as exc:
                problems.append(f"cgroup {directory}: {exc}")
    try:
        top.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append(f"cgroup {top}: {exc}")
    return problems


def create_cgroup_root(root: str) -> None:
    """``root`` in every hierarchy; in cpuset, with its parent's CPUs and memory nodes."""
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / root.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            mine, parents = path / name, path.parent / name
            if mine.exists() and not mine.read_text().strip():
                mine.write_text(parents.read_text())


def machine_state(ignore_pids: set[int] | None = None) -> dict[str, Any]:
    """What a test compares before and after a cluster with real nodes: sysctls, mounts,
    cgroup directories at the top of each hierarchy, network links, and our processes."""
    mounts = sorted(
        line.split(" - ")[0].split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    cgroups = sorted(
        str(p) for h in cgroup_hierarchies() if h.is_dir() for p in h.iterdir() if p.is_dir()
    )
    return {
        "sysctls": {name: read_sysctl(name) for name in KUBELET_SYSCTLS},
        "mounts": mounts,
        "cgroups": cgroups,
        # "name" or "name master": a veth is told apart by the bridge it is attached to.
        "links": sorted(_link(name) for name in os.listdir("/sys/class/net")),
        "addresses": sorted(
            subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout.splitlines()
        ),
    }


def _link(name: str) -> str:
    master = Path("/sys/class/net") / name / "master"
    return f"{name} {os.path.basename(os.readlink(master))}" if master.is_symlink() else name


def _kill(pids: set[int]) -> list[str]:
    """SIGKILL each pid (found by what it holds of ours, never by name) and wait for it."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if Path(f"/proc/{pid}").exists() and not _zombie(pid)}
        time.sleep(0.05)
    return [f"process {pid} still running after SIGKILL" for pid in sorted(alive)]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
