"""Which scored users each long-tail item is asked about, without holding all users in one place.

The scored users are hashed into ``ceil(users / long_tail_bucket_users)`` buckets. Replica ``r`` of
long-tail item ``i`` (``r < long_tail_users_per_item``) is hashed to a bucket as well, and each bucket
draws, per item and with a per-item seed, as many distinct members as the item has replicas there,
among the members who never interacted with it. Replicas in different buckets get different users, so
an item gets ``long_tail_users_per_item`` distinct users unless too few of a bucket's members are
eligible. A bucket's result depends on its members and requests alone: the in-memory planner
(``candidates.plan_prompts``) and the Beam scoring job (a ``CoGroupByKey`` per bucket) agree.
"""

from __future__ import annotations

import collections
import hashlib
from typing import TYPE_CHECKING, Iterable, Sequence

from tfrs_selreg.teachers.sampling import sample_excluding, seeded_rng

if TYPE_CHECKING:
    from tfrs_selreg.teachers.candidates import CandidateConfig

SEGMENT = "long_tail"


def num_buckets(num_users: int, config: "CandidateConfig") -> int:
    """``ceil(num_users / long_tail_bucket_users)``, at least one."""
    return max(1, -(-num_users // config.long_tail_bucket_users))


def _bucket(buckets: int, *parts: str) -> int:
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def user_bucket(user_id: str, buckets: int, config: "CandidateConfig") -> int:
    """The bucket of a scored user."""
    return _bucket(buckets, str(config.seed), SEGMENT, "user", user_id)


def requests(long_tail_items: Sequence[str], buckets: int, config: "CandidateConfig") -> list[tuple[int, str]]:
    """``(bucket, item)`` once per replica of each long-tail item."""
    return [(_bucket(buckets, str(config.seed), SEGMENT, item, str(r)), item)
            for item in long_tail_items for r in range(config.long_tail_users_per_item)]


def assign(members: Iterable[tuple[str, Iterable[str]]], items: Iterable[str],
           config: "CandidateConfig") -> list[tuple[str, str]]:
    """The ``(user_id, item)`` pairs of one bucket.

    ``members``: the bucket's users, each with the long-tail items it interacted with (train,
    validation or test); ``items``: the bucket's requests, an item once per replica hashed here.
    """
    members = sorted((uid, set(seen)) for uid, seen in members)
    user_ids = [uid for uid, _ in members]
    wanted = collections.Counter(items)
    saw: dict[str, set] = {}
    for uid, seen in members:
        for item in seen:
            if item in wanted:
                saw.setdefault(item, set()).add(uid)
    pairs = []
    for item in sorted(wanted):
        rng = seeded_rng(config.seed, SEGMENT, item)
        pairs.extend((uid, item) for uid in sample_excluding(rng, user_ids, wanted[item], saw.get(item, set())))
    return pairs
