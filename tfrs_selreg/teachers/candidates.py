"""Who gets scored against what: the prompts of the offline teacher-scoring job.

A *prompt* is one :class:`~tfrs_selreg.teachers.base.ScoringRequest`: a user's context (the last ``L``
training items, oldest first), a shuffled candidate list, and the pairs the teacher must label. This
module plans prompts by item id (:class:`PromptPlan`, small enough to ship to Beam workers) and turns a
plan into a request with the item catalog (:func:`to_request`). Everything is pure Python and seeded:
the same prepared data and :class:`CandidateConfig` give the same prompts on any machine, whatever
order users are visited in, which is what lets the scoring cache resume a killed job.

Segments (the paper's candidate sets plus its coverage augmentation, section 3 of docs/method.md):

- ``popular``: every user; ``N`` candidates, ``round(N * uniform_mix)`` of them drawn uniformly from
  the catalog and the rest from the popular pool (top ``popular_pool`` items by training popularity).
- ``cold_start``: cold-start users get an extra prompt of ``N`` diverse candidates, uniform over the
  catalog.
- ``long_tail``: each long-tail item (the prepared ``long_tail`` flag) is paired with
  ``long_tail_users_per_item`` sampled users who never saw it, drawn in buckets of users so that no
  step needs all users at once (``teachers.long_tail``). A user's long-tail items share prompts (at most
  ``long_tail_items_per_prompt`` each), filled up to ``N`` from the popular/uniform mixture, and every
  pair holds one long-tail item.
- ``probe``: pairs with known truth for measuring the teacher and training the reliability gate. The
  positives are the user's most recent training items (up to ``probes_per_user``, always leaving one
  for the context), held *out of that prompt's context* (method.md section 5, rule 1): the context is
  the ``L`` training items before them, so the probe asks what teacher pairs ask, which unseen item
  the user takes next, and a cold-start user's context leaves the item out. The negative is drawn
  from the *same* distribution as the user's own candidates: a source (popular pool, uniform, long
  tail) is picked with the share it has among the user's candidate slots, so popularity alone cannot
  answer a probe. The prompt is filled up to ``N`` candidates from the same mixture so it looks like
  any other prompt to a listwise teacher.

Exclusions: a candidate is never an item the user interacted with (train, validation or test); a
user's validation and test items never appear in that user's context or candidates
(:func:`check_no_leakage` enforces it on every plan).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import random
from typing import Iterable, Mapping, Optional, Sequence

from tfrs_selreg.data import schema
from tfrs_selreg.data.prepared import Item, User
from tfrs_selreg.teachers import long_tail
from tfrs_selreg.teachers.base import PairSpec, ScoringRequest
from tfrs_selreg.teachers.sampling import sample_excluding, seeded_rng

SEGMENT_POPULAR = "popular"
SEGMENT_COLD_START = "cold_start"
SEGMENT_LONG_TAIL = "long_tail"
SEGMENT_PROBE = "probe"
SEGMENTS = (SEGMENT_POPULAR, SEGMENT_COLD_START, SEGMENT_LONG_TAIL, SEGMENT_PROBE)

# Where a candidate slot was drawn from; probe negatives follow each user's mixture of these.
SOURCE_POPULAR = "popular"
SOURCE_UNIFORM = "uniform"
SOURCE_LONG_TAIL = "long_tail"


@dataclasses.dataclass(frozen=True)
class CandidateConfig:
    """What the scoring job asks the teacher.

    Attributes:
      seed: seeds every sampling decision (users, candidates, pairs, probes, shuffles).
      max_users: score a seeded sample of this many users; ``None`` scores all users.
      context_length: ``L``, training items in a prompt's context (the most recent ones).
      num_candidates: ``N``, candidates per prompt.
      popular_pool: size of the popular pool (top items by training popularity).
      uniform_mix: share of a popular prompt's candidates drawn uniformly from the catalog.
      pairs_per_user: teacher pairs sampled from each prompt's candidates.
      probes_per_user: probe pairs per user (fewer when the user has fewer training items).
      long_tail_users_per_item: users each long-tail item is scored for.
      long_tail_items_per_prompt: long-tail items sharing one ``long_tail`` prompt.
      long_tail_bucket_users: users per bucket of the long-tail assignment (``teachers.long_tail``):
        what one worker holds to assign a bucket's items.
    """

    seed: int = 0
    max_users: Optional[int] = None
    context_length: int = 10
    num_candidates: int = 20
    popular_pool: int = 500
    uniform_mix: float = 0.2
    pairs_per_user: int = 10
    probes_per_user: int = 4
    long_tail_users_per_item: int = 3
    long_tail_items_per_prompt: int = 5
    long_tail_bucket_users: int = 4096

    def __post_init__(self):
        positive = ("context_length", "num_candidates", "popular_pool", "long_tail_items_per_prompt",
                    "long_tail_bucket_users")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"CandidateConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pairs_per_user", "probes_per_user", "long_tail_users_per_item"):
            if getattr(self, name) < 0:
                raise ValueError(f"CandidateConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.num_candidates < 2:
            raise ValueError(f"CandidateConfig.num_candidates must be >= 2 to form pairs, "
                             f"got {self.num_candidates}")
        if not 0.0 <= self.uniform_mix <= 1.0:
            raise ValueError(f"CandidateConfig.uniform_mix must be in [0, 1], got {self.uniform_mix}")
        if self.max_users is not None and self.max_users < 1:
            raise ValueError(f"CandidateConfig.max_users must be >= 1 or None, got {self.max_users}")


@dataclasses.dataclass(frozen=True)
class PromptPlan:
    """A prompt by item id; :func:`to_request` resolves it against the catalog."""

    user_id: str
    segment: str
    context: tuple[str, ...]
    candidates: tuple[str, ...]
    pairs: tuple[PairSpec, ...]


def _sample_pairs(rng: random.Random, candidates: Sequence[str], k: int) -> list[PairSpec]:
    """``k`` distinct unordered pairs of candidates, each in a random orientation."""
    all_pairs = list(itertools.combinations(candidates, 2))
    out = []
    for a, b in rng.sample(all_pairs, min(k, len(all_pairs))):
        if rng.random() < 0.5:
            a, b = b, a
        out.append(PairSpec(a, b, schema.KIND_TEACHER))
    return out


def user_rank(seed: int, user_id: str) -> str:
    """The key of the ``max_users`` sample: the users with the smallest ranks are scored."""
    return hashlib.sha256(f"{seed}\x00users\x00{user_id}".encode("utf-8")).hexdigest()


def sample_user_ids(user_ids: Iterable[str], config: CandidateConfig) -> list[str]:
    """The users a job scores, sorted: all of ``user_ids`` (those with training items), or the
    ``config.max_users`` of smallest :func:`user_rank` (a seeded sample that a Beam combiner can take
    without sorting all users)."""
    ranked = sorted(user_ids)
    if config.max_users is None or config.max_users >= len(ranked):
        return ranked
    return sorted(sorted(ranked, key=lambda uid: user_rank(config.seed, uid))[:config.max_users])


class Catalog:
    """The item pools candidates are drawn from: the only global structure of planning."""

    def __init__(self, items: Sequence[Item], popular_pool: int):
        by_popularity = sorted(items, key=lambda it: (-it.popularity, it.item_id))
        self.all = [it.item_id for it in by_popularity]
        self.popular = self.all[:popular_pool]
        self.long_tail = [it.item_id for it in by_popularity if it.long_tail]
        self.long_tail_set = frozenset(self.long_tail)

    def pool(self, source: str) -> list[str]:
        return {SOURCE_POPULAR: self.popular, SOURCE_UNIFORM: self.all,
                SOURCE_LONG_TAIL: self.long_tail}[source]


class UserPlanner:
    """Plans the prompts of one user at a time, given the catalog and the user's long-tail items; see
    the module docstring for the rules."""

    def __init__(self, catalog: Catalog, config: CandidateConfig):
        self.config = config
        self.catalog = catalog

    def plan(self, user: User, long_tail_items: Iterable[str] = ()) -> list[PromptPlan]:
        """The user's prompts: popular, cold-start (cold-start users), long-tail (one per
        ``long_tail_items_per_prompt`` of ``long_tail_items``), then the probe, whose negatives follow
        the mixture of all the others. :func:`check_no_leakage` holds for the result."""
        state = _UserState(user)
        plans = [self._popular(state)]
        if user.cold_start:
            plans.append(self._cold_start(state))
        plans.extend(self._long_tail(state, sorted(set(long_tail_items))))
        plans.append(self._probe(state))
        plans = [p for p in plans if p is not None]
        check_no_leakage(plans, [user])
        return plans

    def seen_long_tail(self, user: User) -> tuple[str, ...]:
        """The long-tail items the user interacted with (train, validation or test)."""
        seen = set(user.train_items) | set(user.val_items) | set(user.test_items)
        return tuple(sorted(seen & self.catalog.long_tail_set))

    def _context(self, state: "_UserState", held_out: set) -> tuple[str, ...]:
        # An item both trained on and held out (a repeat interaction) must not reach the prompt either.
        hidden = held_out | state.held_out
        kept = [it for it in state.user.train_items if it not in hidden]
        return tuple(kept[-self.config.context_length:])

    def _draw(self, rng: random.Random, state: "_UserState", source: str, k: int, exclude: set) -> list[str]:
        chosen = sample_excluding(rng, self.catalog.pool(source), k, state.seen | exclude)
        state.sources[source] += len(chosen)
        return chosen

    def _mixture(self, rng: random.Random, state: "_UserState", k: int, exclude: set) -> list[str]:
        """``k`` candidates: ``round(k * uniform_mix)`` uniform, the rest from the popular pool."""
        n_uniform = round(k * self.config.uniform_mix)
        chosen = self._draw(rng, state, SOURCE_UNIFORM, n_uniform, exclude)
        chosen += self._draw(rng, state, SOURCE_POPULAR, k - len(chosen), exclude | set(chosen))
        return chosen

    @staticmethod
    def _prompt(rng: random.Random, user: User, segment: str, context: tuple[str, ...],
                candidates: list[str], pairs: list[PairSpec]) -> Optional[PromptPlan]:
        if len(candidates) < 2 or not pairs or not context:
            return None
        rng.shuffle(candidates)
        return PromptPlan(user.user_id, segment, context, tuple(candidates), tuple(pairs))

    def _popular(self, state: "_UserState") -> Optional[PromptPlan]:
        user = state.user
        rng = seeded_rng(self.config.seed, user.user_id, SEGMENT_POPULAR)
        candidates = self._mixture(rng, state, self.config.num_candidates, set())
        pairs = _sample_pairs(rng, candidates, self.config.pairs_per_user)
        return self._prompt(rng, user, SEGMENT_POPULAR, self._context(state, set()), candidates, pairs)

    def _cold_start(self, state: "_UserState") -> Optional[PromptPlan]:
        user = state.user
        rng = seeded_rng(self.config.seed, user.user_id, SEGMENT_COLD_START)
        candidates = self._draw(rng, state, SOURCE_UNIFORM, self.config.num_candidates, set())
        pairs = _sample_pairs(rng, candidates, self.config.pairs_per_user)
        return self._prompt(rng, user, SEGMENT_COLD_START, self._context(state, set()), candidates, pairs)

    def _long_tail(self, state: "_UserState", tail_items: list[str]) -> list[PromptPlan]:
        """Each of the user's long-tail items is paired with fillers of the user's mixture."""
        cfg, user = self.config, state.user
        plans = []
        for start in range(0, len(tail_items), cfg.long_tail_items_per_prompt):
            chunk = tail_items[start:start + cfg.long_tail_items_per_prompt]
            prng = seeded_rng(cfg.seed, user.user_id, SEGMENT_LONG_TAIL, str(start))
            state.sources[SOURCE_LONG_TAIL] += len(chunk)
            fillers = self._mixture(prng, state, max(cfg.num_candidates - len(chunk), 1), set(chunk))
            per_item = max(1, cfg.pairs_per_user // len(chunk))
            pairs = []
            for item in chunk:
                for other in prng.sample(fillers, min(per_item, len(fillers))):
                    a, b = (item, other) if prng.random() < 0.5 else (other, item)
                    pairs.append(PairSpec(a, b, schema.KIND_TEACHER))
            plan = self._prompt(prng, user, SEGMENT_LONG_TAIL, self._context(state, set()),
                                chunk + fillers, pairs)
            if plan is not None:
                plans.append(plan)
        return plans

    def _probe(self, state: "_UserState") -> Optional[PromptPlan]:
        """The most recent training items, held out of the context, against negatives drawn from the
        user's own candidate mixture; which side the positive is on is a coin flip."""
        cfg, user = self.config, state.user
        eligible = [it for it in user.train_items if it not in state.held_out]
        n = min(cfg.probes_per_user, len(eligible) - 1)
        if n < 1:
            return None
        rng = seeded_rng(cfg.seed, user.user_id, SEGMENT_PROBE)
        positives = eligible[-n:]
        context = self._context(state, set(positives))
        sources = [s for s in (SOURCE_POPULAR, SOURCE_UNIFORM, SOURCE_LONG_TAIL) if state.sources[s] > 0]
        weights = [state.sources[s] for s in sources]
        taken: set = set()
        pairs = []
        for positive in positives:
            source = rng.choices(sources, weights=weights)[0]
            negative = sample_excluding(rng, self.catalog.pool(source), 1, state.seen | taken)
            if not negative:
                continue
            taken.add(negative[0])
            if rng.random() < 0.5:
                pairs.append(PairSpec(positive, negative[0], schema.KIND_PROBE, truth=1))
            else:
                pairs.append(PairSpec(negative[0], positive, schema.KIND_PROBE, truth=0))
        candidates = [it for p in pairs for it in (p.item_i, p.item_j)]
        for _ in range(max(cfg.num_candidates - len(candidates), 0)):
            source = rng.choices(sources, weights=weights)[0]
            candidates += sample_excluding(rng, self.catalog.pool(source), 1, state.seen | set(candidates))
        return self._prompt(rng, user, SEGMENT_PROBE, context, candidates, pairs)


class _UserState:
    """What planning one user accumulates: the exclusions and how many candidate slots each source filled."""

    def __init__(self, user: User):
        self.user = user
        self.held_out = set(user.val_items) | set(user.test_items)
        self.seen = set(user.train_items) | self.held_out
        self.sources = {SOURCE_POPULAR: 0, SOURCE_UNIFORM: 0, SOURCE_LONG_TAIL: 0}


def plan_prompts(items: Sequence[Item], users: Sequence[User],
                 config: CandidateConfig = CandidateConfig()) -> list[PromptPlan]:
    """All prompts of a scoring job in memory, by user id: the same plans as the Beam scoring job
    (``beam_pipelines.score``), which runs these steps as transforms."""
    catalog = Catalog(items, config.popular_pool)
    planner = UserPlanner(catalog, config)
    chosen = set(sample_user_ids((u.user_id for u in users if u.train_items), config))
    scored = sorted((u for u in users if u.user_id in chosen), key=lambda u: u.user_id)
    tail: dict[str, list[str]] = {}
    if scored and config.long_tail_users_per_item:
        buckets = long_tail.num_buckets(len(scored), config)
        members: dict[int, list] = collections.defaultdict(list)
        for user in scored:
            members[long_tail.user_bucket(user.user_id, buckets, config)].append(
                (user.user_id, planner.seen_long_tail(user)))
        wanted: dict[int, list] = collections.defaultdict(list)
        for bucket, item in long_tail.requests(catalog.long_tail, buckets, config):
            wanted[bucket].append(item)
        for bucket, bucket_items in wanted.items():
            for uid, item in long_tail.assign(members.get(bucket, ()), bucket_items, config):
                tail.setdefault(uid, []).append(item)
    return [plan for user in scored for plan in planner.plan(user, tail.get(user.user_id, ()))]


def check_no_leakage(plans: Sequence[PromptPlan], users: Sequence[User]) -> None:
    """Raises ``ValueError`` when a plan shows a user's validation/test item to the teacher.

    Also refuses candidates the user interacted with (except probe positives, which are training
    items held out of the context) and context items that are not the user's training items.
    """
    by_id = {u.user_id: u for u in users}
    for plan in plans:
        user = by_id[plan.user_id]
        held_out = set(user.val_items) | set(user.test_items)
        train = set(user.train_items)
        shown = set(plan.context) | set(plan.candidates)
        leaked = shown & held_out
        if leaked:
            raise ValueError(f"prompt ({plan.segment}) of user {plan.user_id} shows validation/test "
                             f"item(s) {sorted(leaked)}; this is a bug in candidate planning")
        if not set(plan.context) <= train:
            raise ValueError(f"context of user {plan.user_id} holds non-training items "
                             f"{sorted(set(plan.context) - train)}")
        positives = {p.item_i if p.truth == 1 else p.item_j for p in plan.pairs
                     if p.kind == schema.KIND_PROBE}
        if positives & set(plan.context):
            raise ValueError(f"probe positive(s) {sorted(positives & set(plan.context))} of user "
                             f"{plan.user_id} are in the probe's own context")
        interacted = (set(plan.candidates) & train) - positives
        if interacted:
            raise ValueError(f"candidates of user {plan.user_id} hold items the user interacted "
                             f"with: {sorted(interacted)}")


def to_request(plan: PromptPlan, catalog: Mapping[str, Item]) -> ScoringRequest:
    """The :class:`ScoringRequest` of a plan; ``catalog`` maps item id to :class:`Item`."""
    try:
        return ScoringRequest(
            user_id=plan.user_id,
            context=tuple(catalog[i] for i in plan.context),
            candidates=tuple(catalog[i] for i in plan.candidates),
            pairs=plan.pairs,
            segment=plan.segment)
    except KeyError as e:
        raise ValueError(f"item {e.args[0]!r} of user {plan.user_id} is not in the catalog "
                         "(items.jsonl); the prepared folder is inconsistent") from None


def pair_count(plans: Sequence[PromptPlan], kind: str) -> int:
    """Number of planned pairs of ``kind`` (``teacher`` or ``probe``)."""
    return sum(1 for p in plans for pair in p.pairs if pair.kind == kind)
