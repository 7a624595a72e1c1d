"""Functions run in hard-limited children by the tests."""


def allocate(megabytes: int) -> int:
    blocks = [bytearray(1024 * 1024) for _ in range(megabytes)]
    return len(blocks)


def environment() -> dict[str, str]:
    """What a hard-limited child was started with (/proc/self/environ, as `ps e` shows it) and holds now."""
    with open("/proc/self/environ", "rb") as started_with:
        initial = started_with.read().decode(errors="replace")
    import os

    return {"initial": initial, "current": "\0".join(f"{k}={v}" for k, v in os.environ.items())}
