"""Image lists: the Dev Spaces registries' `external_images.txt` read, checked, named, merged.

A list holds one image reference per line. The devfile registry's copy is sorted and ends with
a newline; the plugin registry's is unsorted, repeats entries and has no final newline. Both
are read the same way: lines stripped (CRLF too), empty lines and `#` comments skipped,
duplicates dropped, every reference checked as IMAGES' are. A bad line is reported with its
source and line number and skipped, never silently.

Names become container names, so they must be DNS-1123 labels, unique, and *stable*: adding
or removing one image must not rename another (a renamed container changes every pod). A name
is the last path segment of the reference, lowercased, `_` made `-` (`che-code`,
`universal-developer-image`); a short hash of the whole reference is added only when that is
not a valid label or when two new references would get the same name. Names already given
(``keep``: the running DaemonSet's, or an existing IMAGES value) are kept as they are.
"""

from __future__ import annotations

import hashlib
import re
import ssl
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from imagepuller.imageparsers import INIT_CONTAINER_NAME, CachedImage, load_ca_bundle
from imagepuller.imageref import check_image_reference
from imagepuller.settings import (
    DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE,
    DEFAULT_IMAGES_FROM_TIMEOUT_SECONDS,
)

NAME_MAX = 63
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NOT_IN_LABEL = re.compile(r"[^a-z0-9]+")
_READ_CHUNK = 64 * 1024
# A problem quotes the line; a long line is shortened to this many characters. A list is
# anyone's text: of its skipped lines the first MAX_PROBLEMS_KEPT are told, then only how many
# more, so a hostile or wrong list (a web page) cannot fill the log.
_SHOWN_MAX = 120
MAX_PROBLEMS_KEPT = 20


class ListUnavailable(Exception):
    """A list could not be read (or is over a limit): nothing of it is used."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass(frozen=True)
class ImageList:
    """One list as read: its references in file order, and a line for each entry skipped."""

    source: str
    references: tuple[str, ...]
    problems: tuple[str, ...] = ()


def _show(text: str) -> str:
    return repr(text) if len(text) <= _SHOWN_MAX else f"{text[:_SHOWN_MAX]!r}..."


def parse_list(text: str, source: str) -> ImageList:
    """The references of one `external_images.txt`, each checked, first occurrence kept."""
    references: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    skipped = 0
    # Lines end at "\n" only (strip() takes a "\r" off): splitlines() would also split at
    # form feeds and Unicode separators, and the line numbers reported would be wrong.
    for number, line in enumerate(text.split("\n"), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            check_image_reference(entry)
        except ValueError as err:
            skipped += 1
            if len(problems) < MAX_PROBLEMS_KEPT:
                problems.append(f"{source}:{number}: {_show(entry)} skipped: {err}")
            continue
        if entry not in seen:
            seen.add(entry)
            references.append(entry)
    if skipped > len(problems):
        problems.append(f"{source}: and {skipped - len(problems)} more lines skipped")
    return ImageList(source, tuple(references), tuple(problems))


# --- names ---------------------------------------------------------------------------------


def plain_name(reference: str) -> str:
    """The readable name: last path segment without tag or digest, lowercased, `_` as `-`."""
    path = reference.split("@", 1)[0]
    last = path.rsplit("/", 1)[-1].split(":", 1)[0]
    return last.lower().replace("_", "-")


def is_valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and bool(_LABEL.fullmatch(name)) and name != INIT_CONTAINER_NAME


def hashed_name(reference: str, taken: Iterable[str] = ()) -> str:
    """The plain name made a valid label, then `-` and a hash of the whole reference: at most
    63 characters in all, the hash lengthened in the (unlikely) case it is taken."""
    used = set(taken)
    stem = _NOT_IN_LABEL.sub("-", plain_name(reference)).strip("-") or "image"
    digest = hashlib.sha256(reference.encode()).hexdigest()
    for length in range(6, len(digest) + 1, 2):
        head = stem[: NAME_MAX - 1 - length].rstrip("-") or "image"
        name = f"{head}-{digest[:length]}"
        if name not in used:
            return name
    raise ValueError(f"no free name for {reference!r}")  # needs 2**256 names taken


def name_images(
    references: Sequence[str],
    *,
    keep: Mapping[str, str] | None = None,
    taken: Iterable[str] = (),
) -> tuple[CachedImage, ...]:
    """Name each reference (in the order given). A name in ``keep`` (reference -> name) stays
    when it is still valid and free; names in ``taken`` are not used."""
    used = set(taken) | {INIT_CONTAINER_NAME}
    names: dict[str, str] = {}
    for reference in references:
        kept = (keep or {}).get(reference)
        if kept is not None and is_valid_name(kept) and kept not in used:
            names[reference] = kept
            used.add(kept)
    new = [reference for reference in references if reference not in names]
    plain = {reference: plain_name(reference) for reference in new}
    # Two new references with one plain name both get a hash: which one kept the plain name
    # would otherwise depend on the order they were read in.
    counts = Counter(plain.values())
    for reference in new:
        name = plain[reference]
        if not (is_valid_name(name) and counts[name] == 1 and name not in used):
            name = hashed_name(reference, used)
        names[reference] = name
        used.add(name)
    return tuple(CachedImage(names[reference], reference) for reference in references)


def merge_images(
    existing: Sequence[CachedImage],
    references: Iterable[str],
    *,
    keep: Mapping[str, str] | None = None,
) -> tuple[CachedImage, ...]:
    """``existing`` (IMAGES, names kept) followed by every listed reference it does not hold
    already, sorted (the order lists are served in does not matter) and named."""
    held = {image.image for image in existing}
    new = sorted({reference for reference in references if reference not in held})
    return tuple(existing) + name_images(new, keep=keep, taken=(image.name for image in existing))


def format_images(images: Iterable[CachedImage]) -> str:
    """The IMAGES value: `name=image;name=image;`."""
    return "".join(f"{image.name}={image.image};" for image in images)


# --- reading -------------------------------------------------------------------------------


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verifying TLS context: the system's CAs, plus ``ca_bundle`` (PEM text, or the path of a
    file holding PEM certificates) for registries served with an internal CA."""
    context = ssl.create_default_context()
    if ca_bundle:
        load_ca_bundle(context, ca_bundle)
    return context


def read_limited(stream: BinaryIO, source: str, max_bytes: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise ListUnavailable(source, "no complete answer in time (IMAGES_FROM_TIMEOUT)")
        # read1: at most one read from the socket, so a server trickling bytes is cut off at
        # the deadline instead of filling a whole chunk slowly.
        read1 = getattr(stream, "read1", None)
        chunk = read1(_READ_CHUNK) if read1 else stream.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise ListUnavailable(
                source,
                f"larger than {max_bytes} bytes (the limit, IMAGES_FROM_MAX_BYTES); nothing of "
                "it is used",
            )
        chunks.append(chunk)


def read_source(
    source: str,
    *,
    timeout: float = DEFAULT_IMAGES_FROM_TIMEOUT_SECONDS,
    max_bytes: int = DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE,
    ca_bundle: str | None = None,
    stdin: BinaryIO | None = None,
    allowed_hosts: tuple[str, ...] = (),
) -> ImageList:
    """Read and parse one list: an http(s) URL, a file, or ``-`` for standard input.
    ``allowed_hosts`` (IMAGES_FROM_HOSTS; empty: any) bounds where a URL and its redirects
    may lead."""
    if is_url(source):
        # Imported here: only a puller with IMAGES_FROM, or `images` given a URL, reads one,
        # and http.client with urllib.request cost every other start about 20 ms.
        from imagepuller.listfetch import fetch

        data = fetch(
            source,
            timeout=timeout,
            max_bytes=max_bytes,
            ca_bundle=ca_bundle,
            allowed_hosts=allowed_hosts,
        )
    elif source == "-":
        source = "standard input"
        stream = stdin or (sys.stdin.buffer if sys.stdin is not None else None)
        if stream is None:
            raise ListUnavailable(source, "standard input is closed")
        try:
            data = read_limited(stream, source, max_bytes, None)
        except OSError as err:
            raise ListUnavailable(source, f"cannot read: {err}") from None
    else:
        try:
            with open(source, "rb") as file:
                data = read_limited(file, source, max_bytes, None)
        except OSError as err:
            raise ListUnavailable(source, f"cannot read the file: {err.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ListUnavailable(source, f"not UTF-8 text (byte {err.start})") from None
    return parse_list(text, source)


def too_many(count: int, max_images: int) -> str | None:
    if count <= max_images:
        return None
    return (
        f"the lists hold {count} images, more than the limit of {max_images} "
        "(IMAGES_FROM_MAX_IMAGES); nothing of them is used"
    )
