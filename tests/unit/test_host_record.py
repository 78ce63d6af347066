"""Two clusters with real nodes at once put back the machine's sysctls, not a kubelet's."""

from __future__ import annotations

from pathlib import Path

from localcluster import host
from localcluster.host import RECORD, MachineRecord


def test_the_last_cluster_to_leave_puts_back_what_the_first_found(tmp_path, monkeypatch):
    monkeypatch.setattr(MachineRecord, "directory", tmp_path / "run")
    values = {name: "0" for name in host.KUBELET_SYSCTLS}
    monkeypatch.setattr(host, "read_sysctl", lambda name: values[name])
    a, b = tmp_path / "a", tmp_path / "b"
    for cluster in (a, b):
        cluster.mkdir()
        (cluster / RECORD).write_text("{}")

    with MachineRecord() as machine:
        assert machine.join(str(a))["kernel/panic"] == "0"
    values["kernel/panic"] = "10"  # a's kubelet set it
    with MachineRecord() as machine:
        # b starts while a's kubelet runs: the machine's value is still the one a found.
        assert machine.join(str(b))["kernel/panic"] == "0"
    with MachineRecord() as machine:
        assert machine.leave(str(a), {"kernel/panic": "10"}) is None  # b still runs
    with MachineRecord() as machine:
        assert machine.leave(str(b), {"kernel/panic": "10"})["kernel/panic"] == "0"
    assert not (tmp_path / "run" / "sysctls.json").exists()


def test_a_holder_removed_without_putting_back_does_not_block_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(MachineRecord, "directory", tmp_path / "run")
    monkeypatch.setattr(host, "read_sysctl", lambda name: "0")
    gone, alive = tmp_path / "gone", tmp_path / "alive"
    for cluster in (gone, alive):
        cluster.mkdir()
        (cluster / RECORD).write_text("{}")
    with MachineRecord() as machine:
        machine.join(str(gone))
        machine.join(str(alive))
    (gone / RECORD).unlink()  # its directory was deleted by hand
    with MachineRecord() as machine:
        assert machine.leave(str(alive), {}) == dict.fromkeys(host.KUBELET_SYSCTLS, "0")


def test_without_a_machine_record_a_cluster_puts_back_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(MachineRecord, "directory", tmp_path / "run")
    with MachineRecord() as machine:
        assert machine.leave(str(Path(tmp_path)), {"kernel/panic": "1"}) == {"kernel/panic": "1"}
