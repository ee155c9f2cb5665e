"""Prompt planning: leakage guard, exclusions, probe construction, coverage augmentation, determinism."""

import collections
import dataclasses
import random

import pytest

from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import PreparedData, User
from tfrs_selreg.teachers import candidates as c
from tfrs_selreg.teachers import long_tail
from tfrs_selreg.teachers.base import PairSpec


def _by_user(users):
    return {u.user_id: u for u in users}


def _positive(pair: PairSpec) -> str:
    return pair.item_i if pair.truth == 1 else pair.item_j


@pytest.mark.parametrize("data", ["synthetic", "movielens"])
def test_no_validation_or_test_item_reaches_any_prompt(data, request):
    items, users = request.getfixturevalue(data)
    users_by_id = _by_user(users)
    plans = c.plan_prompts(items, users)
    assert set(c.SEGMENTS) >= {p.segment for p in plans} >= {
        c.SEGMENT_POPULAR, c.SEGMENT_LONG_TAIL, c.SEGMENT_PROBE}
    for plan in plans:
        user = users_by_id[plan.user_id]
        held_out = set(user.val_items) | set(user.test_items)
        pair_items = {it for p in plan.pairs for it in (p.item_i, p.item_j)}
        assert not held_out & (set(plan.context) | set(plan.candidates) | pair_items)


def test_leakage_check_refuses_a_leaky_plan(synthetic):
    items, users = synthetic
    plan = c.plan_prompts(items, users)[0]
    user = _by_user(users)[plan.user_id]
    leaky = dataclasses.replace(plan, candidates=plan.candidates + (user.test_items[0],))
    with pytest.raises(ValueError, match="validation/test"):
        c.check_no_leakage([leaky], users)
    seen = dataclasses.replace(plan, candidates=plan.candidates + (user.train_items[0],))
    with pytest.raises(ValueError, match="interacted"):
        c.check_no_leakage([seen], users)


def test_repeat_interaction_in_test_split_stays_out_of_context(synthetic):
    items, users = synthetic
    user = next(u for u in users if len(u.train_items) > 5)
    # The same item trained on and held out again (a re-purchase): it must not be shown either.
    repeat = dataclasses.replace(user, test_items=(user.train_items[-1],))
    plans = c.plan_prompts(items, [repeat])
    assert plans
    for plan in plans:
        assert user.train_items[-1] not in plan.context + plan.candidates


def test_candidates_exclude_everything_the_user_interacted_with(movielens):
    items, users = movielens
    users_by_id = _by_user(users)
    for plan in c.plan_prompts(items, users):
        user = users_by_id[plan.user_id]
        seen = set(user.train_items) | set(user.val_items) | set(user.test_items)
        positives = {_positive(p) for p in plan.pairs if p.kind == schema.KIND_PROBE}
        assert not (set(plan.candidates) - positives) & seen
        assert len(set(plan.candidates)) == len(plan.candidates)
        assert set(plan.context) <= set(user.train_items)


def test_popular_prompt_draws_from_popular_pool_and_uniform_mix(movielens):
    items, users = movielens
    config = c.CandidateConfig(popular_pool=300, uniform_mix=0.25, num_candidates=20)
    pool = {it.item_id for it in sorted(items, key=lambda it: (-it.popularity, it.item_id))[:300]}
    for plan in c.plan_prompts(items, users, config):
        if plan.segment != c.SEGMENT_POPULAR:
            continue
        assert len(plan.candidates) == 20
        # 15 from the pool; the 5 uniform draws may land in the pool too.
        assert len(set(plan.candidates) & pool) >= 15
        user = _by_user(users)[plan.user_id]
        assert plan.context == user.train_items[-10:]


def test_pairs_are_distinct_sampled_from_candidates_in_both_orientations(movielens):
    items, users = movielens
    config = c.CandidateConfig(pairs_per_user=7)
    orientation = collections.Counter()
    for plan in c.plan_prompts(items, users, config):
        if plan.segment != c.SEGMENT_POPULAR:
            continue
        assert len(plan.pairs) == 7
        unordered = {frozenset((p.item_i, p.item_j)) for p in plan.pairs}
        assert len(unordered) == 7
        order = {it: k for k, it in enumerate(plan.candidates)}
        for p in plan.pairs:
            assert p.kind == schema.KIND_TEACHER and p.truth is None and p.item_i != p.item_j
            orientation[order[p.item_i] < order[p.item_j]] += 1
    assert min(orientation.values()) > 0.35 * sum(orientation.values())


def test_probe_positive_is_a_recent_training_item_held_out_of_its_context(movielens):
    items, users = movielens
    users_by_id = _by_user(users)
    config = c.CandidateConfig(probes_per_user=3)
    probes = [p for p in c.plan_prompts(items, users, config) if p.segment == c.SEGMENT_PROBE]
    assert len(probes) == len(users)
    truths = collections.Counter()
    for plan in probes:
        user = users_by_id[plan.user_id]
        positives = [_positive(p) for p in plan.pairs]
        assert sorted(positives) == sorted(user.train_items[-3:])
        assert plan.context == user.train_items[:-3][-10:]
        assert not set(positives) & set(plan.context)
        seen = set(user.train_items) | set(user.val_items) | set(user.test_items)
        for p in plan.pairs:
            assert p.kind == schema.KIND_PROBE
            negative = p.item_j if p.truth == 1 else p.item_i
            assert negative not in seen
            truths[p.truth] += 1
        assert len(plan.candidates) == config.num_candidates
    assert truths[0] > 0.35 * len(users) * 3 and truths[1] > 0.35 * len(users) * 3


def test_cold_start_users_get_diverse_prompt_and_a_context_without_the_probe(synthetic):
    items, users = synthetic
    users_by_id = _by_user(users)
    plans = c.plan_prompts(items, users)
    cold = {u.user_id for u in users if u.cold_start}
    assert cold
    cold_prompts = [p for p in plans if p.segment == c.SEGMENT_COLD_START]
    assert {p.user_id for p in cold_prompts} == cold
    for plan in plans:
        user = users_by_id[plan.user_id]
        if plan.segment != c.SEGMENT_PROBE or not user.cold_start:
            continue
        positives = [_positive(p) for p in plan.pairs]
        # At most len(train) - 1 probes, so the context keeps at least one item and never a positive.
        assert len(positives) == len(user.train_items) - 1
        assert plan.context == tuple(it for it in user.train_items if it not in positives)
    one_item = User("solo", ("sp000",), ("sp001",), ("sp002",), 1, True)
    solo = c.plan_prompts(items, [one_item])
    assert {p.segment for p in solo} == {c.SEGMENT_POPULAR, c.SEGMENT_COLD_START, c.SEGMENT_LONG_TAIL}


def test_probe_negatives_follow_the_users_candidate_mixture(movielens):
    items, users = movielens
    pool = {it.item_id for it in sorted(items, key=lambda it: (-it.popularity, it.item_id))[:100]}
    # Popular prompts only, no uniform mix: every negative must come from the popular pool.
    config = c.CandidateConfig(popular_pool=100, uniform_mix=0.0, long_tail_users_per_item=0)
    for plan in c.plan_prompts(items, users, config):
        assert set(plan.candidates) <= pool | {_positive(p) for p in plan.pairs if p.truth is not None}
    # With a uniform mix, some negatives are drawn from the whole catalog as well.
    config = c.CandidateConfig(popular_pool=100, uniform_mix=0.5, long_tail_users_per_item=0)
    negatives = [p.item_j if p.truth == 1 else p.item_i
                 for plan in c.plan_prompts(items, users, config) if plan.segment == c.SEGMENT_PROBE
                 for p in plan.pairs]
    outside = sum(1 for n in negatives if n not in pool)
    assert 0.2 * len(negatives) < outside < 0.8 * len(negatives)


def test_each_long_tail_item_is_scored_for_sampled_users(synthetic):
    items, users = synthetic
    users_by_id = _by_user(users)
    tail = {it.item_id for it in items if it.long_tail}
    config = c.CandidateConfig(long_tail_users_per_item=2, long_tail_items_per_prompt=3)
    scored_for = collections.defaultdict(set)
    for plan in c.plan_prompts(items, users, config):
        if plan.segment != c.SEGMENT_LONG_TAIL:
            continue
        for p in plan.pairs:
            assert {p.item_i, p.item_j} & tail
            for it in {p.item_i, p.item_j} & tail:
                scored_for[it].add(plan.user_id)
                assert it not in users_by_id[plan.user_id].train_items
    assert set(scored_for) == tail
    # Two sampled users each; a uniform filler of another prompt can add a long-tail item there too.
    assert all(len(u) >= 2 for u in scored_for.values())


def test_plans_are_deterministic_and_independent_of_user_order(synthetic):
    items, users = synthetic
    config = c.CandidateConfig(seed=3)
    first = c.plan_prompts(items, users, config)
    shuffled = list(users)
    random.Random(0).shuffle(shuffled)
    assert c.plan_prompts(list(reversed(items)), shuffled, config) == first
    assert c.plan_prompts(items, users, c.CandidateConfig(seed=4)) != first


def test_max_users_is_a_seeded_sample(movielens):
    items, users = movielens
    plans = c.plan_prompts(items, users, c.CandidateConfig(max_users=7, seed=1))
    chosen = {p.user_id for p in plans}
    assert len(chosen) == 7
    assert chosen == {p.user_id for p in c.plan_prompts(items, users, c.CandidateConfig(max_users=7, seed=1))}
    assert chosen != {p.user_id for p in c.plan_prompts(items, users, c.CandidateConfig(max_users=7, seed=2))}


@pytest.mark.parametrize("bucket_users", [3, 4096])
def test_long_tail_items_get_distinct_users_who_never_saw_them_in_any_bucketing(movielens, bucket_users):
    items, users = movielens
    users_by_id = _by_user(users)
    config = c.CandidateConfig(long_tail_users_per_item=3, long_tail_bucket_users=bucket_users)
    scored = [u for u in users if u.train_items]
    assert long_tail.num_buckets(len(scored), config) == (-(-len(scored) // 3) if bucket_users == 3 else 1)
    catalog = c.Catalog(items, config.popular_pool)
    assigned = collections.defaultdict(list)
    for plan in c.plan_prompts(items, users, config):
        if plan.segment == c.SEGMENT_LONG_TAIL:
            user = users_by_id[plan.user_id]
            seen = set(user.train_items) | set(user.val_items) | set(user.test_items)
            for item in set(plan.candidates) & set(catalog.long_tail) - seen:
                if any(item in (p.item_i, p.item_j) for p in plan.pairs):
                    assigned[item].append(plan.user_id)
    # One bucket: every long-tail item gets 3 distinct users (a uniform filler elsewhere can add more).
    # Buckets of 1-5 users: two replicas of an item in a one-member bucket get one user (12 of 502 here).
    short = [it for it in catalog.long_tail if len(set(assigned[it])) < 3]
    assert len(short) == 0 if bucket_users == 4096 else 0 < len(short) <= len(catalog.long_tail) // 20


def test_a_bucket_assigns_from_its_own_contents_alone():
    config = c.CandidateConfig(seed=2)
    members = [("u1", ["a"]), ("u2", []), ("u3", ["b"]), ("u4", [])]
    pairs = long_tail.assign(members, ["a", "a", "b"], config)
    assert sorted(pairs) == sorted(long_tail.assign(list(reversed(members)), ["b", "a", "a"], config))
    by_item = collections.defaultdict(list)
    for uid, item in pairs:
        by_item[item].append(uid)
    assert len(by_item["a"]) == len(set(by_item["a"])) == 2 and "u1" not in by_item["a"]
    assert len(by_item["b"]) == 1 and by_item["b"] != ["u3"]
    # Replicas land in different buckets, so different buckets give an item different users.
    buckets = {b for b, _ in long_tail.requests(["x"] * 1, 64, c.CandidateConfig(long_tail_users_per_item=8))}
    assert len(buckets) > 1


def test_max_users_keeps_the_smallest_seeded_ranks(movielens):
    _, users = movielens
    ids = [u.user_id for u in users if u.train_items]
    config = c.CandidateConfig(max_users=7, seed=1)
    assert c.sample_user_ids(ids, config) == sorted(sorted(ids, key=lambda uid: c.user_rank(1, uid))[:7])
    assert c.sample_user_ids(list(reversed(ids)), config) == c.sample_user_ids(ids, config)
    assert c.sample_user_ids(ids, c.CandidateConfig()) == sorted(ids)


def test_to_request_resolves_items_and_names_a_missing_one(synthetic_prepared):
    data = PreparedData(synthetic_prepared)
    items, users = data.items(), data.users()
    plan = c.plan_prompts(items, users)[0]
    catalog = {it.item_id: it for it in items}
    request = c.to_request(plan, catalog)
    assert [it.item_id for it in request.candidates] == list(plan.candidates)
    assert request.segment == plan.segment and request.pairs == plan.pairs
    del catalog[plan.candidates[0]]
    with pytest.raises(ValueError, match="not in the catalog"):
        c.to_request(plan, catalog)


@pytest.mark.parametrize("field,value", [("num_candidates", 1), ("uniform_mix", 1.5),
                                         ("max_users", 0), ("context_length", 0),
                                         ("probes_per_user", -1)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        c.CandidateConfig(**{field: value})
