"""The local cluster's certificate authority and the certificates it signs, made with openssl.

One CA for the whole cluster, as kubeadm makes one: it signs the API server's serving
certificate, the API server's client certificate towards kubelets, and each real kubelet's
serving certificate, so ``kubectl logs`` through the API server verifies the kubelet and the
kubelet verifies the API server. Keys are ECDSA P-256: generated in milliseconds, which matters
when every test cluster makes its own.

Files are made once per directory and kept: a restarted API server (same workdir) serves the
same certificate, so clients that trust the CA keep working.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

DAYS = "825"


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


class ClusterCA:
    """``ca.crt``/``ca.key`` in ``directory``; ``issue()`` signs leaf certificates with it."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.cert = self.directory / "ca.crt"
        self.key = self.directory / "ca.key"

    def ensure(self) -> ClusterCA:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.cert.exists() and self.key.exists()):
            _openssl(
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", DAYS,
                "-subj", "/CN=imagepuller-local-cluster-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            )  # fmt: skip
            self.key.chmod(0o600)
        return self

    def issue(
        self,
        name: str,
        common_name: str,
        organization: str | None = None,
        ips: tuple[str, ...] = (),
        dns: tuple[str, ...] = (),
        server: bool = False,
        client: bool = False,
    ) -> tuple[Path, Path]:
        """``<name>.crt`` and ``<name>.key`` in the CA's directory, made when missing."""
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        if cert.exists() and key.exists():
            return cert, key
        subject = f"/CN={common_name}" + (f"/O={organization}" if organization else "")
        usages = [u for u, wanted in (("serverAuth", server), ("clientAuth", client)) if wanted]
        extensions = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={','.join(usages)}",
        ]
        alt_names = [f"IP:{ip}" for ip in ips] + [f"DNS:{d}" for d in dns]
        if alt_names:
            extensions.append(f"subjectAltName={','.join(alt_names)}")
        with tempfile.TemporaryDirectory() as tmp:
            request, ext_file = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
            ext_file.write_text("\n".join(extensions) + "\n")
            _openssl(
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(key), "-out", str(request), "-subj", subject,
            )  # fmt: skip
            _openssl(
                "x509", "-req", "-in", str(request), "-CA", str(self.cert),
                "-CAkey", str(self.key), "-CAcreateserial", "-days", DAYS,
                "-extfile", str(ext_file), "-out", str(cert),
            )  # fmt: skip
        key.chmod(0o600)
        return cert, key
