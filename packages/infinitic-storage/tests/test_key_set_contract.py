"""The key-set storage contract, run against every implementation (see the ``ks`` fixture)."""

from __future__ import annotations

import asyncio

import pytest

from infinitic.storage import KeySetPage, KeySetStorage


async def test_absent_set_is_empty(ks: KeySetStorage) -> None:
    assert await ks.count("absent") == 0
    assert await ks.page("absent") == KeySetPage([], None)


async def test_add_and_remove_are_idempotent(ks: KeySetStorage) -> None:
    await ks.add("tag", "id-1")
    await ks.add("tag", "id-1")
    await ks.add("tag", "id-2")
    assert await ks.count("tag") == 2
    await ks.remove("tag", "id-1")
    await ks.remove("tag", "id-1")
    await ks.remove("tag", "never-added")
    await ks.remove("other-tag", "id-2")
    assert await ks.count("tag") == 1
    assert await ks.page("tag") == KeySetPage(["id-2"], None)
    await ks.remove("tag", "id-2")
    assert await ks.count("tag") == 0
    assert await ks.page("tag") == KeySetPage([], None)


async def test_sets_are_independent(ks: KeySetStorage) -> None:
    await ks.add("a", "x")
    await ks.add("b", "y")
    await ks.add("ab", "z")
    assert (await ks.page("a")).members == ["x"]
    assert (await ks.page("b")).members == ["y"]
    assert await ks.count("ab") == 1


async def test_paging_through_2500_members(ks: KeySetStorage) -> None:
    members = [f"workflow-{i:05}" for i in range(2500)]
    semaphore = asyncio.Semaphore(20)

    async def add(member: str) -> None:
        async with semaphore:
            await ks.add("big", member)

    await asyncio.gather(*(add(m) for m in reversed(members)))
    assert await ks.count("big") == 2500

    pages: list[KeySetPage] = []
    after: str | None = None
    while True:
        page = await ks.page("big", after=after, limit=1000)
        pages.append(page)
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert [len(p.members) for p in pages] == [1000, 1000, 500]
    assert [m for p in pages for m in p.members] == members
    assert pages[0].next_cursor == members[999]


async def test_page_boundaries(ks: KeySetStorage) -> None:
    for member in ["d", "a", "c", "b"]:
        await ks.add("s", member)
    assert await ks.page("s", limit=2) == KeySetPage(["a", "b"], "b")
    assert await ks.page("s", after="b", limit=2) == KeySetPage(["c", "d"], None)
    assert await ks.page("s", after="bb", limit=10) == KeySetPage(["c", "d"], None)
    assert await ks.page("s", after="d") == KeySetPage([], None)
    assert await ks.page("s", limit=4) == KeySetPage(["a", "b", "c", "d"], None)
    with pytest.raises(ValueError):
        await ks.page("s", limit=0)


async def test_unicode_members_in_code_point_order(ks: KeySetStorage) -> None:
    members = ["b", "Z", "a", "é", "ä", "中", "🎉", "a b", "ﬀ", "A"]
    for member in members:
        await ks.add("clé 🎉", member)
    page = await ks.page("clé 🎉")
    assert page.members == sorted(members)
    assert await ks.page("clé 🎉", after="é") == KeySetPage(sorted(members)[7:], None)


async def test_close_is_idempotent(ks: KeySetStorage) -> None:
    await ks.add("k", "m")
    await ks.close()
    await ks.close()
