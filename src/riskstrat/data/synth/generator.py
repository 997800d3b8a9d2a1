"""A synthetic linked population with a latent, month-by-month health state and known truth.

Each person has fixed traits (age, sex, deprivation, ethnicity, practice, an unobserved person
effect) and a state that evolves monthly: long-term conditions accumulate (with multimorbidity
clusters), frailty drifts up with age and conditions and jumps after emergency admissions, and a
decaying recent-admission term raises near-term risk. Every source's events are drawn from hazards
that depend on a latent severity built from that state. Nothing in the tables reveals the person
effect or frailty directly, which keeps even a perfect model short of certainty.

The truth for an index date T is estimated by simulating K independent futures from each person's
state at T, with random streams separate from the observed data's.

>>> result = generate_population(300, start="2021-01-01", years=1, seed=1, truth_dates=[])
>>> sorted(result.tables)[:3]
['ae_attendances', 'gp_contacts', 'inpatient_spells']
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from riskstrat.errors import InvalidInputError
from riskstrat.data.io import atomic_path, canonical_to_arrow, check_replaceable
from riskstrat.data.schema import TABLES, pandas_dtype
from riskstrat.data.validate import stamp_data_dir
from riskstrat.data.synth import params as P
from riskstrat.data.synth.cut import cut_tables, cut_truth
from riskstrat.data.synth.jobs import OrderedJobs, check_jobs

K_COND = len(P.CONDITION_NAMES)
COND_INDEX = {c: i for i, c in enumerate(P.CONDITION_NAMES)}
_A = np.array([v[0] for v in P.CONDITIONS.values()])
_C = np.array([v[1] for v in P.CONDITIONS.values()])
_D = np.array([v[2] for v in P.CONDITIONS.values()])
_W = np.array([v[3] for v in P.CONDITIONS.values()])
_ITEM_CHAPTERS = np.array(list(P.COST_ITEM))
_ITEM_MEDIAN = np.array(list(P.COST_ITEM.values()))
_CHAPTER = np.array([list(P.COST_ITEM).index(v[4]) for v in P.CONDITIONS.values()])
_ACUTE = np.array([list(P.COST_ITEM).index(ch) for ch in P.ACUTE_CHAPTERS])
_LOGNORMAL_MEAN = np.exp(0.5**2 / 2)
_REPEAT_COST = P.REPEAT_ITEMS * _ITEM_MEDIAN[_CHAPTER] * _LOGNORMAL_MEAN
_ACUTE_COST = _ITEM_MEDIAN[_ACUTE].mean() * _LOGNORMAL_MEAN
_LINKS = np.zeros((K_COND, K_COND))
for (_a, _b), _v in P.CONDITION_LINKS.items():
    _LINKS[COND_INDEX[_a], COND_INDEX[_b]] = _v
_LOG_A32, _C32, _D32, _LINKS32 = (np.log(_A).astype(np.float32), _C.astype(np.float32), _D.astype(np.float32),
                                  _LINKS.astype(np.float32))
_SMI, _DEPRESSION, _DIABETES, _CKD = (COND_INDEX[c] for c in ("smi", "depression", "diabetes", "ckd"))
_ICD_EMERGENCY = np.array([c for c, _ in P.EMERGENCY_DIAGNOSES])
_ICD_COND = np.array([COND_INDEX[k] if k else -1 for _, k in P.EMERGENCY_DIAGNOSES])
_EPOCH = np.datetime64("1970-01-01", "D")

CARE_NONE, CARE_HOME, CARE_RESIDENTIAL, CARE_NURSING = 0, 1, 2, 3
_CARE_TYPES = {CARE_HOME: "home_care", CARE_RESIDENTIAL: "residential", CARE_NURSING: "nursing"}


@dataclass
class SynthResult:
    """Canonical tables plus the ground truth (kept apart: no training code reads it)."""

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    metadata: dict = field(default_factory=dict)


@dataclass
class _State:
    """The latent state of a group of people (arrays of length n), mutated month by month."""

    birth: np.ndarray        # days since epoch
    female: np.ndarray
    dep: np.ndarray          # deprivation decile 1..10
    fixed_h: np.ndarray      # practice effect + person effect (unobserved)
    drift: np.ndarray        # slowly wandering health (unobserved, AR(1) month to month)
    ltc: np.ndarray          # (n, K) bool
    frailty: np.ndarray
    recent: np.ndarray
    seek: np.ndarray         # care-seeking habit (unobserved): A&E and GP use, not admissions
    alive: np.ndarray
    care: np.ndarray         # CARE_* code
    care_start: np.ndarray   # days since epoch
    care_weekly: np.ndarray

    def take(self, idx: np.ndarray) -> "_State":
        return _State(**{k: v[idx].copy() for k, v in self.__dict__.items()})


def _lognormal(rng: np.random.Generator, median_sigma: tuple[float, float], n: int) -> np.ndarray:
    median, sigma = median_sigma
    return np.round(median * np.exp(sigma * rng.standard_normal(n)), 2)


def _age_years(state: _State, day: int) -> np.ndarray:
    return (day - state.birth) / 365.25


def _severity(state: _State, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, clinical part of h without the age term)."""
    n_ltc = state.ltc.sum(axis=1)
    # Deliberately not log-linear: deprivation matters most before old age, multimorbidity has a
    # threshold, and frailty acts more strongly in the old, as in real data.
    ltc_weight = np.where(age < 65, P.LTC_MIDLIFE, P.LTC_OLD)  # conditions weigh more in midlife
    clinical = (P.DEP_EFFECT * (5.5 - state.dep) * (age < 75) + ltc_weight * (state.ltc @ _W)
                + P.MULTIMORBIDITY * (n_ltc >= 3) + P.FRAILTY_THRESHOLD_EFFECT * (state.frailty > 0.35)
                + P.FRAILTY_EFFECT * state.frailty * (1 + 0.5 * (age >= 75)) + state.fixed_h + state.drift
                + P.SOCIAL_CARE_EFFECT * (state.care == CARE_HOME) + P.CARE_HOME_EFFECT * (state.care >= CARE_RESIDENTIAL)
                # Mental-health crises in deprived areas; diabetes with kidney disease.
                + P.MENTAL_HEALTH_DEPRIVED * ((state.ltc[:, _SMI] | state.ltc[:, _DEPRESSION]) & (state.dep <= 3))
                + P.DIABETES_CKD * (state.ltc[:, _DIABETES] & state.ltc[:, _CKD]))
    # Saturate: even the sickest are not admitted every week (a log-linear tail would do that).
    clinical = P.CLINICAL_MAX - np.logaddexp(0, P.CLINICAL_MAX - clinical) + state.recent
    adult_age = np.maximum(age, 18)
    age_term = (P.AGE_SLOPE * (adult_age - 50) + P.OLD_AGE_SLOPE * np.maximum(adult_age - 70, 0)
                + P.YOUNG_ADULT * np.clip((25 - age) / 7, 0, 1) * (age >= 16) + 1.0 * (age < 2))
    return age_term + clinical, clinical


def _seeking(state: _State, age: np.ndarray, share: float) -> np.ndarray:
    """Rate multiplier from the care-seeking habit, mean one; the habit fades with age."""
    w = share * np.clip((80 - age) / 30, 0.15, 1.5)
    return np.exp(w * state.seek - 0.5 * (w * P.SEEK_SD) ** 2)


def _frailty_target(age: np.ndarray, n_ltc: np.ndarray) -> np.ndarray:
    return np.clip(P.FRAILTY_AGE * np.maximum(age - 55, 0) + P.FRAILTY_LTC * n_ltc, 0, 0.95)


def _onset_hazard(state: _State, age: np.ndarray) -> np.ndarray:
    """Annual onset hazard of each condition, (n, K), in float32 to keep the big array cheap."""
    person = (0.5 * state.fixed_h).astype(np.float32)[:, None]
    log_h = (_LOG_A32[None, :] + _C32[None, :] * (age.astype(np.float32)[:, None] - 60)
             + _D32[None, :] * ((5.5 - state.dep) / 4.5).astype(np.float32)[:, None] + person
             + state.ltc.astype(np.float32) @ _LINKS32)
    adult = np.clip((age - 10) / 8, 0, 1).astype(np.float32)[:, None]  # little onset in children
    return np.exp(log_h) * adult


@dataclass
class _Electives:
    rate: np.ndarray          # Poisson rate of elective admissions this month (0 if dead at its start)
    count: np.ndarray         # admissions drawn (the draw is capped at 2)
    cost: np.ndarray          # their total cost
    first: np.ndarray         # the cost of the first of them (0 if none)


@dataclass
class _MonthOut:
    emergency: np.ndarray     # count per person
    died: np.ndarray          # bool per person
    death_day: np.ndarray     # day offset of death within the month (valid where died)
    cost: np.ndarray          # total cost this month per person (electives included)
    records: dict[str, list[dict[str, np.ndarray]]] | None
    elective: _Electives | None = None
    emergency_hazard: np.ndarray | None = None
    death_hazard: np.ndarray | None = None
    emergency_first_base: np.ndarray | None = None  # the first emergency admission's cost without bed days


EVENTS_FREE, EVENTS_SUPPRESSED, EVENTS_FORCED = 0, 1, 2


def _step(state: _State, day0: int, ndays: int, rng: np.random.Generator, *, record: bool,
          person_idx: np.ndarray | None = None, hazards_only: bool = False,
          events: np.ndarray | None = None) -> _MonthOut:
    """Advance everyone one month from day ``day0``; optionally return event records.

    With ``hazards_only`` no emergency admission or death happens; their monthly hazards are
    returned instead (``emergency_hazard``, ``death_hazard``), which lets the truth be computed as
    an expectation of exp(-cumulative hazard) rather than from noisy event indicators.
    ``events`` sets this per person: ``EVENTS_FREE`` (drawn as usual), ``EVENTS_SUPPRESSED`` (as
    ``hazards_only``) or ``EVENTS_FORCED`` (drawn given that an emergency admission or death
    happens this month); the hazards and the first emergency admission's cost without its bed
    days (``emergency_first_base``) are then returned.
    """
    if hazards_only:
        events = np.full(state.birth.shape[0], EVENTS_SUPPRESSED)
    n = state.birth.shape[0]
    alive = state.alive
    age = _age_years(state, day0)
    h, clin = _severity(state, age)
    cost = np.zeros(n)
    recs: dict[str, list[dict[str, np.ndarray]]] | None = {} if record else None

    def emit(table: str, who: np.ndarray, **cols: np.ndarray) -> None:
        if recs is not None and who.size:
            recs.setdefault(table, []).append({"person": person_idx[who], **cols})

    # Death this month, with a death day; events of the month fall before it.
    death_rate = np.exp(P.DEATH_LOG_A + P.DEATH_AGE * age + P.DEATH_H * (clin - state.fixed_h * 0.3)) / 12
    u_death = rng.random(n)
    died = alive & (u_death < 1 - np.exp(-death_rate))
    em_rate = P.EMERGENCY_RATE * np.exp(h)
    if events is not None:
        died &= events == EVENTS_FREE
        # Forced: death with its chance given an event; without death, one or two admissions.
        forced = alive & (events == EVENTS_FORCED)
        p_death, p_event = 1 - np.exp(-death_rate), 1 - np.exp(-(death_rate + em_rate))
        died |= forced & (u_death * p_event < p_death)
    last_day = np.full(n, ndays - 1)
    last_day[died] = rng.integers(0, ndays, died.sum())

    def days_for(who: np.ndarray) -> np.ndarray:
        return day0 + np.floor(rng.random(who.size) * (last_day[who] + 1)).astype(np.int64)

    # Emergency admissions (most through A&E).
    em = np.where(alive, rng.poisson(em_rate), 0)
    em = np.minimum(em, 2)
    if events is not None:
        em[events == EVENTS_SUPPRESSED] = 0
        # Without death at least one admission: one with P(1 | >= 1) under the month's Poisson.
        need = forced & ~died
        if need.any():  # (no draw otherwise: the quiet futures' stream stays as it was)
            one = em_rate[need] * np.exp(-em_rate[need]) / np.maximum(-np.expm1(-em_rate[need]), 1e-300)
            em[need] = np.where(rng.random(need.sum()) < one, 1, 2)
    first_base = np.zeros(n)
    who_em = np.repeat(np.arange(n), em)
    if who_em.size:
        los = np.floor(np.exp(0.5 + 0.02 * (age[who_em] - 50) + 1.0 * state.frailty[who_em]
                              + 0.6 * rng.standard_normal(who_em.size))).astype(np.int64)
        los = np.clip(los, 0, 90)
        # A few admissions are major (intensive care, trauma, surgery): costly whoever has them.
        major = rng.random(who_em.size) < P.MAJOR_EPISODE_SHARE
        base = _lognormal(rng, P.COST_EMERGENCY, who_em.size) * np.where(major, P.MAJOR_EPISODE_FACTOR, 1)
        c_em = base + P.COST_BED_DAY * los
        first = np.r_[0, np.flatnonzero(np.diff(who_em)) + 1]  # who_em is sorted
        first_base[who_em[first]] = base[first]
        np.add.at(cost, who_em, c_em)
        through_ae = rng.random(who_em.size) < P.AE_BEFORE_ADMISSION
        c_ae = _lognormal(rng, P.COST_AE, who_em.size) * through_ae
        np.add.at(cost, who_em, c_ae)
        if record:
            adm = days_for(who_em)
            # Diagnosis: condition-linked codes only for people with that condition.
            has = np.where(_ICD_COND[None, :] >= 0, state.ltc[who_em][:, np.maximum(_ICD_COND, 0)], True)
            weights = has * np.where(_ICD_COND >= 0, 3.0, 1.0)[None, :]
            cum = np.cumsum(weights, axis=1)
            pick = (cum < rng.random(who_em.size)[:, None] * cum[:, -1:]).sum(axis=1)
            emit("inpatient_spells", who_em, admission_date=adm, discharge_date=adm + los,
                 admission_method=np.full(who_em.size, "emergency"), primary_diagnosis=_ICD_EMERGENCY[pick],
                 cost=c_em)
            a = who_em[through_ae]
            emit("ae_attendances", a, arrival_date=adm[through_ae], admitted=np.ones(a.size, bool),
                 department_type=np.full(a.size, "emergency_department"), cost=c_ae[through_ae])

    # A&E attendances that did not end in admission.
    ae = np.where(alive, rng.poisson(P.AE_RATE * np.exp(0.55 * clin + 0.004 * (age - 50)) * _seeking(state, age, 1.0)), 0)
    who = np.repeat(np.arange(n), ae)
    c = _lognormal(rng, P.COST_AE, who.size)
    np.add.at(cost, who, c)
    if record:
        # Every synthetic attendance is at a (type 1) emergency department; no random draw is spent on it.
        emit("ae_attendances", who, arrival_date=days_for(who), admitted=np.zeros(who.size, bool),
             department_type=np.full(who.size, "emergency_department"), cost=c)

    # Elective and maternity admissions.
    el_rate = P.ELECTIVE_RATE * np.exp(0.35 * clin + 0.02 * (np.minimum(age, 85) - 50))
    el = np.minimum(np.where(alive, rng.poisson(el_rate), 0), 2)
    who = np.repeat(np.arange(n), el)
    c = _lognormal(rng, P.COST_ELECTIVE, who.size)
    np.add.at(cost, who, c)
    # Electives change nothing in the state, so the truth can integrate their cost out (_simulate_truth).
    elective = _Electives(rate=np.where(alive, el_rate, 0.0), count=el, cost=np.zeros(n), first=np.zeros(n))
    np.add.at(elective.cost, who, c)
    if who.size:
        first = np.r_[0, np.flatnonzero(np.diff(who)) + 1]  # who is sorted: each person's first draw
        elective.first[who[first]] = c[first]
    if record and who.size:
        adm = days_for(who)
        emit("inpatient_spells", who, admission_date=adm, discharge_date=adm + rng.integers(0, 4, who.size),
             admission_method=np.full(who.size, "elective"),
             primary_diagnosis=rng.choice(P.ELECTIVE_DIAGNOSES, who.size), cost=c)
    mat = alive & state.female & (age >= 18) & (age < 45) & (rng.random(n) < P.MATERNITY_RATE)
    who = np.flatnonzero(mat)
    c = _lognormal(rng, P.COST_MATERNITY, who.size)
    np.add.at(cost, who, c)
    if record and who.size:
        adm = days_for(who)
        emit("inpatient_spells", who, admission_date=adm, discharge_date=adm + rng.integers(1, 3, who.size),
             admission_method=np.full(who.size, "maternity"), primary_diagnosis=np.full(who.size, "O80"), cost=c)

    # Outpatients (missed appointments commoner in deprived areas and cost nothing here).
    op = np.where(alive, rng.poisson(P.OUTPATIENT_RATE * np.exp(0.5 * clin + 0.01 * (np.minimum(age, 85) - 50))), 0)
    who = np.repeat(np.arange(n), op)
    attended = rng.random(who.size) >= 0.03 + 0.012 * (10 - state.dep[who])
    c = _lognormal(rng, P.COST_OUTPATIENT, who.size) * attended
    np.add.at(cost, who, c)
    if record:
        emit("outpatient_appointments", who, appointment_date=days_for(who),
             specialty=rng.choice(P.SPECIALTIES, who.size), attended=attended, cost=c)

    # GP contacts.
    gp = np.where(alive, rng.poisson(P.GP_RATE * np.exp(0.4 * clin + 0.012 * (age - 50) + 0.3 * state.female)
                                     * _seeking(state, age, P.SEEK_GP)), 0)
    who = np.repeat(np.arange(n), gp)
    c = _lognormal(rng, P.COST_GP, who.size)
    np.add.at(cost, who, c)
    if record:
        kinds = np.where(rng.random(who.size) < 0.6, "face to face", "telephone")
        kinds[(age[who] > 80) & (rng.random(who.size) < 0.3)] = "home visit"
        emit("gp_contacts", who, contact_date=days_for(who), contact_type=kinds, cost=c)

    # Prescriptions: repeats for each condition held, plus acute items. Futures simulated for the
    # truth need only their cost, so they use its expectation instead of drawing every item.
    acute_rate = np.where(alive, P.ACUTE_ITEM_RATE * np.exp(0.3 * clin), 0)
    if not record:
        cost += np.where(alive, state.ltc @ _REPEAT_COST + acute_rate * _ACUTE_COST, 0)
    else:
        held_p, held_k = np.nonzero(state.ltc & alive[:, None])
        n_items = rng.poisson(P.REPEAT_ITEMS, held_p.size)
        rep_p, rep_k = np.repeat(held_p, n_items), np.repeat(held_k, n_items)
        acute_p = np.repeat(np.arange(n), rng.poisson(acute_rate))
        who = np.concatenate([rep_p, acute_p])
        chapters = np.concatenate([_CHAPTER[rep_k], rng.choice(_ACUTE, acute_p.size)])
        c = np.round(_ITEM_MEDIAN[chapters] * np.exp(0.5 * rng.standard_normal(who.size)), 2)
        np.add.at(cost, who, c)
        emit("prescriptions", who, issue_date=days_for(who), bnf_chapter=_ITEM_CHAPTERS[chapters], cost=c)

    # Social care: ongoing cost, transitions, reablement after emergency admissions.
    in_care = alive & (state.care != CARE_NONE)
    care_days = np.where(died, last_day + 1, ndays)
    cost += np.where(in_care, state.care_weekly * care_days / 7, 0)
    older = alive & ~died & (age >= 18)
    u = rng.random(n)
    home_rate = P.HOME_CARE_RATE * np.exp(P.HOME_CARE_FRAILTY * state.frailty + 0.6 * state.ltc[:, COND_INDEX["dementia"]]
                                          + 0.5 * (em > 0)) * np.clip((age - 50) / 20, 0.05, 1.5)
    to_home = older & (state.care == CARE_NONE) & (u < 1 - np.exp(-home_rate))
    res_rate = P.RESIDENTIAL_RATE * np.exp(2.5 * state.frailty + 1.2 * state.ltc[:, COND_INDEX["dementia"]])
    to_res = older & (state.care == CARE_HOME) & (u < 1 - np.exp(-res_rate))
    to_nursing = older & (state.care == CARE_RESIDENTIAL) & (u < 1 - np.exp(-P.NURSING_RATE * np.exp(2 * state.frailty)))
    # Many home-care packages end (recovery, family care); fewer when dementia is present.
    end_rate = P.HOME_CARE_END_RATE * (1 - 0.7 * state.ltc[:, COND_INDEX["dementia"]])
    stop_home = older & (state.care == CARE_HOME) & ~to_res & (rng.random(n) < 1 - np.exp(-end_rate))
    change = to_home | to_res | to_nursing
    new_type = np.where(to_home, CARE_HOME, np.where(to_res, CARE_RESIDENTIAL, CARE_NURSING))
    change_day = day0 + rng.integers(0, ndays, n)
    # Close services that end (transition or death).
    ending = ((change | stop_home) & (state.care != CARE_NONE)) | (died & (state.care != CARE_NONE))
    # The month was charged in full above: refund what follows an end that is not a death.
    closed = ending & ~died
    cost[closed] -= state.care_weekly[closed] * (day0 + ndays - change_day[closed]) / 7
    state.care[stop_home] = CARE_NONE
    if record:
        who = np.flatnonzero(ending)
        end = np.where(died[who], day0 + last_day[who], change_day[who])
        ended_type = np.where(stop_home[who], CARE_HOME, state.care[who])
        for code, name in _CARE_TYPES.items():
            sel = ended_type == code
            emit("social_care", who[sel], service_type=np.full(sel.sum(), name), start_date=state.care_start[who[sel]],
                 end_date=end[sel], weekly_cost=state.care_weekly[who[sel]])
    who = np.flatnonzero(change)
    if who.size:
        kinds = new_type[who]
        base = np.select([kinds == CARE_HOME, kinds == CARE_RESIDENTIAL],
                         [P.WEEKLY_COST["home_care"], P.WEEKLY_COST["residential"]], P.WEEKLY_COST["nursing"])
        weekly = np.round(base * np.exp(0.3 * rng.standard_normal(who.size)), 2)
        state.care[who] = kinds
        state.care_start[who] = change_day[who]
        state.care_weekly[who] = weekly
        cost[who] += weekly * (day0 + ndays - change_day[who]) / 7
    reable = older & (em > 0) & (age >= 65) & (state.care == CARE_NONE) & (rng.random(n) < P.REABLEMENT_PROB)
    who = np.flatnonzero(reable)
    if who.size:
        weekly = np.round(P.WEEKLY_COST["reablement"] * np.exp(0.2 * rng.standard_normal(who.size)), 2)
        cost[who] += weekly * 6
        if record:
            start = day0 + rng.integers(0, ndays, who.size)
            emit("social_care", who, service_type=np.full(who.size, "reablement"), start_date=start,
                 end_date=start + 42, weekly_cost=weekly)

    # Long-term condition onsets, dated within the month.
    onset_p = 1 - np.exp(-_onset_hazard(state, age) / 12)
    new = (~state.ltc) & alive[:, None] & ~died[:, None] & (rng.random((n, K_COND)) < onset_p)
    if record:
        p_new, k_new = np.nonzero(new)
        emit("ltc_register", p_new, condition=np.asarray(P.CONDITION_NAMES)[k_new],
             diagnosis_date=day0 + rng.integers(0, ndays, p_new.size))
    state.ltc |= new

    # Frailty and the recent-admission term.
    n_ltc = state.ltc.sum(axis=1)
    target = _frailty_target(age, n_ltc)
    state.frailty = np.clip(state.frailty + P.FRAILTY_PULL * (target - state.frailty) + P.FRAILTY_JUMP * np.minimum(em, 1)
                            + 0.01 * rng.standard_normal(n), 0, 1)
    # Capped so that admissions cannot feed on themselves without bound.
    state.drift = P.DRIFT_AR * state.drift + P.DRIFT_SD * rng.standard_normal(n)
    chronic = (n_ltc >= P.CHRONIC_LTC) | (state.frailty > P.CHRONIC_FRAILTY)
    decay = np.where(chronic, P.RECENT_DECAY_CHRONIC, P.RECENT_DECAY)
    jump = np.where(chronic, P.RECENT_JUMP_CHRONIC, P.RECENT_JUMP)
    state.recent = np.minimum(decay * state.recent + jump * np.minimum(em, 2), P.RECENT_MAX)
    state.alive = alive & ~died
    out = _MonthOut(emergency=em, died=died, death_day=last_day, cost=cost, records=recs, elective=elective)
    if events is not None:
        out.emergency_hazard = np.where(alive, em_rate, 0.0)
        out.death_hazard = np.where(alive, death_rate, 0.0)
        out.emergency_first_base = first_base
    return out


def _month_starts(start: np.datetime64, months: int) -> np.ndarray:
    base = start.astype("datetime64[M]")
    return (base + np.arange(months + 1)).astype("datetime64[D]")


def _practices(n_people: int, seed: int, n_practices: int | None) -> pd.DataFrame:
    """Practices of very different sizes, each with a deprivation level and a small effect."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7_000_001]))
    k = n_practices or int(np.clip(n_people // 1500, 3, 2000))
    size = rng.lognormal(0, 0.6, k)
    return pd.DataFrame({
        "practice_id": [f"P{81000 + i:05d}" for i in range(k)],
        "weight": size / size.sum(),
        "dep_mean": rng.uniform(1.5, 9.5, k),
        "effect": rng.normal(0, P.PRACTICE_EFFECT_SD, k),
    })


def _person_ids(seed: int, first: int, n: int) -> np.ndarray:
    return np.array([hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).hexdigest()
                     for i in range(first, first + n)], dtype=object)


def _initial_state(n: int, start_day: int, practices: pd.DataFrame, rng: np.random.Generator):
    band = rng.choice(len(P.AGE_BAND_WEIGHTS), n, p=P.AGE_BAND_WEIGHTS / P.AGE_BAND_WEIGHTS.sum())
    age = band * 5 + rng.random(n) * 5
    birth = start_day - np.round(age * 365.25).astype(np.int64)
    female = rng.random(n) < np.clip(0.5 + 0.004 * np.maximum(age - 60, 0), 0.5, 0.68)
    prac = rng.choice(len(practices), n, p=practices["weight"].to_numpy())
    dep = np.clip(np.round(practices["dep_mean"].to_numpy()[prac] + rng.normal(0, 1.8, n)), 1, 10).astype(np.int64)
    eth = rng.choice(list(P.ETHNICITY_WEIGHTS), n, p=np.array(list(P.ETHNICITY_WEIGHTS.values())))
    fixed_h = practices["effect"].to_numpy()[prac] + rng.normal(0, P.PERSON_EFFECT_SD, n)
    drift = rng.normal(0, P.DRIFT_SD / np.sqrt(1 - P.DRIFT_AR**2), n)
    state = _State(birth=birth, female=female, dep=dep, fixed_h=fixed_h, drift=drift, ltc=np.zeros((n, K_COND), bool),
                   frailty=np.zeros(n), recent=np.zeros(n), seek=rng.normal(0, P.SEEK_SD, n), alive=np.ones(n, bool),
                   care=np.zeros(n, np.int64), care_start=np.zeros(n, np.int64), care_weekly=np.zeros(n))
    # Prevalent conditions: integrate the onset hazard over life so far (links ignored), and date
    # each diagnosis uniformly over the years it could have happened in.
    haz = _onset_hazard(state, age) / np.exp(0.0)  # annual at current age
    slope = np.where(_C > 0, _C, 1e-9)[None, :]
    cum = haz * (1 - np.exp(-slope * np.maximum(age[:, None] - 10, 0))) / slope
    state.ltc = rng.random((n, K_COND)) < 1 - np.exp(-cum)
    years_back = rng.random((n, K_COND)) * np.minimum(np.maximum(age[:, None] - 12, 0.1), 25) / (1 + 10 * _C)[None, :]
    diag = start_day - np.round(years_back * 365.25).astype(np.int64) - 1
    state.frailty = np.clip(_frailty_target(age, state.ltc.sum(1)) + rng.normal(0, 0.05, n), 0, 1)
    # Some of the old and frail already receive care at the start.
    p_care = np.clip(0.35 * state.frailty ** 2 * (age > 65), 0, 0.5)
    in_care = rng.random(n) < p_care
    kind = np.where(rng.random(n) < 0.7, CARE_HOME, np.where(rng.random(n) < 0.6, CARE_RESIDENTIAL, CARE_NURSING))
    state.care = np.where(in_care, kind, CARE_NONE)
    state.care_start = start_day - rng.integers(30, 900, n)
    base = np.select([state.care == CARE_HOME, state.care == CARE_RESIDENTIAL],
                     [P.WEEKLY_COST["home_care"], P.WEEKLY_COST["residential"]], P.WEEKLY_COST["nursing"])
    state.care_weekly = np.where(in_care, np.round(base * np.exp(0.3 * rng.standard_normal(n)), 2), 0.0)
    return state, prac, eth, diag


def _simulate_truth(state: _State, months: np.ndarray, t_index: int, rng: np.random.Generator,
                    n_futures: int) -> dict[str, np.ndarray]:
    """Truth over the 12 months from ``months[t_index]`` by Monte Carlo over ``n_futures`` futures.

    Emergency admission and death probabilities come from futures in which neither happens while
    their hazards accumulate (the chance of the first event is then exact given the path, so the
    estimate has little variance). Death alone and cost need the full futures, events included.
    The chance of a high cost splits the same way (:func:`high_cost_chance`): without any
    emergency admission or death, from the quiet futures weighted by that chance, with the
    elective admissions' cost integrated out (:func:`high_cost_probability`); with one, from
    "branch" futures that are quiet up to a month drawn at random, have an event forced in that
    month and run freely after it, weighted by the chance of a first event then (times 12), with
    the first emergency admission's cost integrated out. Drawing costly emergency admissions as
    indicators instead would leave the chance for a low-risk person mostly at 0 with the odd
    1/K: ranked by such a chance, the lowest deciles would be the people whose K futures happened
    to miss, and their observed/expected would run far above 1.
    """
    n = state.birth.shape[0]
    quiet = state.take(np.tile(np.arange(n), n_futures))
    full = state.take(np.tile(np.arange(n), n_futures))
    m = n * n_futures
    survive_both = np.ones(m)          # P(no emergency admission and no death so far | path)
    p_em = np.zeros(m)                 # P(emergency admission before death | path)
    died = np.zeros(m, bool)
    cost = np.zeros(m)
    q_cost, el_rate, el_count, el_cost, el_first = np.zeros(m), np.zeros(m), np.zeros(m, np.int64), np.zeros(m), np.zeros(m)
    branch = state.take(np.tile(np.arange(n), n_futures))
    brng = rng.spawn(1)[0]  # its own stream: the quiet and full futures draw as they did without it
    branch_month = brng.integers(0, 12, m)
    branch_quiet, branch_weight, branch_cost, branch_base = np.ones(m), np.zeros(m), np.zeros(m), np.zeros(m)
    branch_em = np.zeros(m, bool)
    for j, t in enumerate(range(t_index, t_index + 12)):
        day0 = int((months[t] - _EPOCH).astype(int))
        ndays = int((months[t + 1] - months[t]).astype(int))
        q = _step(quiet, day0, ndays, rng, record=False, hazards_only=True)
        total = q.emergency_hazard + q.death_hazard
        event = 1 - np.exp(-total)
        p_em += survive_both * event * np.divide(q.emergency_hazard, total, out=np.zeros(m), where=total > 0)
        survive_both *= np.exp(-total)
        q_cost += q.cost
        e = q.elective
        el_first = np.where((el_count == 0) & (e.count > 0), e.first, el_first)
        el_rate += e.rate
        el_count += e.count
        el_cost += e.cost
        f = _step(full, day0, ndays, rng, record=False)
        died |= f.died
        cost += f.cost
        modes = np.select([branch_month > j, branch_month == j], [EVENTS_SUPPRESSED, EVENTS_FORCED], EVENTS_FREE)
        b = _step(branch, day0, ndays, brng, record=False, events=modes)
        branch_cost += b.cost
        now = branch_month == j
        b_total = b.emergency_hazard + b.death_hazard
        branch_weight[now] = 12 * branch_quiet[now] * -np.expm1(-b_total[now])
        branch_base[now] = b.emergency_first_base[now]
        branch_em[now] = b.emergency[now] > 0
        branch_quiet = np.where(branch_month > j, branch_quiet * np.exp(-b_total), branch_quiet)
    shape = (n_futures, n)
    # With two or more electives, the others' cost (the first is integrated out); -1 with fewer.
    others = np.where(el_count >= 2, el_cost - el_first, -1.0)
    return {"p_em": p_em.reshape(shape), "p_em_or_death": (1 - survive_both).reshape(shape),
            "died": died.reshape(shape), "cost": cost.reshape(shape),
            "quiet_weight": survive_both.reshape(shape),
            "cost_without_electives": (q_cost - el_cost).reshape(shape), "elective_rate": el_rate.reshape(shape),
            "elective_others": others.reshape(shape),
            "branch_weight": branch_weight.reshape(shape),
            "branch_cost_without_first": np.where(branch_em, branch_cost - branch_base, branch_cost).reshape(shape),
            "branch_first_emergency": branch_em.reshape(shape)}


def _elective_cost_above(x: np.ndarray) -> np.ndarray:
    """P(one elective admission costs more than ``x``): its lognormal's survival function."""
    from scipy.special import ndtr

    median, sigma = P.COST_ELECTIVE
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(np.maximum(x, 1e-300) / median) / sigma
    return np.where(x > 0, ndtr(-z), 1.0)


def high_cost_probability(threshold: float, *, cost_without_electives: np.ndarray, elective_rate: np.ndarray,
                          elective_others: np.ndarray) -> np.ndarray:
    """P(cost over the horizon > ``threshold`` | the future's path), one value per simulated future.

    Conditional Monte Carlo: electives change nothing in the state, so given a future's path their
    number is a sum of monthly Poisson draws (each capped at 2) with total rate L and their costs are
    independent lognormals. With R the cost without them,

        P(C > t | path) = 1 if R > t, else L e^-L P(one costs > t - R) + P(2+ and their sum > t - R),

    the first term exact, the second estimated, without bias, by the future's own draw of two or
    more electives with the first one's cost integrated out (so one future's value can pass 1; the
    mean over futures is the estimate). Averaged over futures this is the chance of a high cost,
    smooth and positive where the indicator [C > t] over K futures takes K+1 values, mostly 0.
    """
    rest = cost_without_electives
    one = elective_rate * np.exp(-elective_rate)
    p = one * _elective_cost_above(threshold - rest)
    two_or_more = elective_others >= 0
    p = p + np.where(two_or_more, _elective_cost_above(threshold - rest - np.maximum(elective_others, 0)), 0.0)
    return np.where(rest > threshold, 1.0, p)


def _emergency_cost_above(x: np.ndarray) -> np.ndarray:
    """P(an emergency admission's cost without bed days exceeds ``x``): a lognormal, times
    ``MAJOR_EPISODE_FACTOR`` for the share that are major."""
    from scipy.special import ndtr

    median, sigma = P.COST_EMERGENCY
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(np.maximum(x, 1e-300) / median) / sigma
        z_major = z - np.log(P.MAJOR_EPISODE_FACTOR) / sigma
    p = (1 - P.MAJOR_EPISODE_SHARE) * ndtr(-z) + P.MAJOR_EPISODE_SHARE * ndtr(-z_major)
    return np.where(x > 0, p, 1.0)


def high_cost_chance(threshold: float, *, quiet_weight: np.ndarray, cost_without_electives: np.ndarray,
                     elective_rate: np.ndarray, elective_others: np.ndarray, branch_weight: np.ndarray,
                     branch_cost_without_first: np.ndarray, branch_first_emergency: np.ndarray) -> np.ndarray:
    """P(cost over the horizon > ``threshold``), one unbiased value per simulated future
    (:func:`_simulate_truth`): the quiet future's part, P(no emergency admission or death) times
    :func:`high_cost_probability`, plus the branch future's part, its weight times the chance its
    first forced emergency admission's cost takes the total over the threshold (or whether the
    total is over it, when the forced event is a death without admission)."""
    quiet = quiet_weight * high_cost_probability(threshold, cost_without_electives=cost_without_electives,
                                                 elective_rate=elective_rate, elective_others=elective_others)
    rest = threshold - branch_cost_without_first
    after = np.where(branch_first_emergency > 0, _emergency_cost_above(rest), (rest < 0).astype(float))
    return quiet + branch_weight * after


def _records_to_frames(recs: dict[str, list[dict[str, np.ndarray]]], ids: np.ndarray) -> dict[str, pd.DataFrame]:
    frames = {}
    for table, parts in recs.items():
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        df = pd.DataFrame({"person_id": ids[cols.pop("person")]})
        for k, v in cols.items():
            if k.endswith("_date"):
                v = (_EPOCH + v.astype("timedelta64[D]")).astype("datetime64[s]")
            df[k] = v
        frames[table] = df
    return frames


def _canonical(table: str, df: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for col in TABLES[table].columns:
        values = df[col.name] if col.name in df else pd.Series(pd.NA, index=df.index)
        out[col.name] = values.astype(pandas_dtype(col)) if col.kind != "int" else values.astype("Int16")
    return pd.DataFrame(out)


def _chunk(first: int, n: int, chunk_no: int, *, seed: int, start: np.datetime64, months: np.ndarray,
           practices: pd.DataFrame, truth_steps: dict[int, str], n_futures: int):
    """Simulate one chunk of people; returns (tables, truth frame, adult future costs per date)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, chunk_no, 0]))
    start_day = int((months[0] - _EPOCH).astype(int))
    state, prac, eth, diag = _initial_state(n, start_day, practices, rng)
    ids = _person_ids(seed, first, n)
    person_idx = np.arange(n)
    recs: dict[str, list[dict[str, np.ndarray]]] = {}
    p0, k0 = np.nonzero(state.ltc)
    recs["ltc_register"] = [{"person": p0, "condition": np.asarray(P.CONDITION_NAMES)[k0], "diagnosis_date": diag[p0, k0]}]
    death_day = np.full(n, -1, np.int64)
    truth_parts, future_costs = [], {}
    for t in range(len(months) - 1):
        if t in truth_steps:
            alive = np.flatnonzero(state.alive)
            trng = np.random.default_rng(np.random.SeedSequence([seed, chunk_no, 1, t]))
            sim = _simulate_truth(state.take(alive), months, t, trng, n_futures)
            truth_parts.append(pd.DataFrame({
                "person_id": ids[alive], "index_date": pd.Timestamp(truth_steps[t]),
                "p_emergency_admission": sim["p_em"].mean(0), "p_death": sim["died"].mean(0),
                "p_emergency_or_death": sim["p_em_or_death"].mean(0),
                "expected_cost": sim["cost"].mean(0),
                "_age": _age_years(state, int((months[t] - _EPOCH).astype(int)))[alive],
            }))
            future_costs[truth_steps[t]] = ({k: sim[k] for k in _COST_PARTS}, alive)
        day0 = int((months[t] - _EPOCH).astype(int))
        ndays = int((months[t + 1] - months[t]).astype(int))
        step = _step(state, day0, ndays, rng, record=True, person_idx=person_idx)
        for table, parts in step.records.items():
            recs.setdefault(table, []).extend(parts)
        dead_now = np.flatnonzero(step.died)
        death_day[dead_now] = day0 + step.death_day[dead_now]
    # Services still open at the end of the extract.
    who = np.flatnonzero(state.alive & (state.care != CARE_NONE))
    if who.size:
        recs.setdefault("social_care", []).append({
            "person": who, "service_type": np.array([_CARE_TYPES[c] for c in state.care[who]]),
            "start_date": state.care_start[who], "end_date": np.full(who.size, -10**9, np.int64),
            "weekly_cost": state.care_weekly[who]})
    frames = _records_to_frames(recs, ids)
    if "social_care" in frames:
        sc = frames["social_care"]
        sc.loc[sc["end_date"] < pd.Timestamp("1900-01-01"), "end_date"] = pd.NaT
    persons = pd.DataFrame({
        "person_id": ids,
        "birth_date": (_EPOCH + state.birth.astype("timedelta64[D]")).astype("datetime64[s]"),
        "sex": np.where(state.female, "female", "male"),
        "deprivation_decile": state.dep,
        "ethnicity_group": eth,
        "practice_id": practices["practice_id"].to_numpy()[prac],
        "registration_start": np.maximum(state.birth, start_day),
        "registration_end": pd.NaT,
        "death_date": pd.NaT,
    })
    persons["registration_start"] = (_EPOCH + persons["registration_start"].to_numpy().astype("timedelta64[D]")).astype("datetime64[s]")
    persons["birth_date"] = persons["birth_date"].dt.floor("D")
    dead = death_day >= 0
    persons.loc[dead, "death_date"] = (_EPOCH + death_day[dead].astype("timedelta64[D]")).astype("datetime64[s]")
    frames["persons"] = persons
    tables = {name: _canonical(name, df) for name, df in frames.items()}
    # Spells and services never run past death.
    dd = pd.Series(persons["death_date"].to_numpy(), index=persons["person_id"].to_numpy())
    for name, end_col in (("inpatient_spells", "discharge_date"), ("social_care", "end_date")):
        if name in tables:
            df = tables[name]
            death = df["person_id"].map(dd).astype("datetime64[s]")
            df[end_col] = df[end_col].where(~(df[end_col] > death), death)
            if name == "social_care":
                df[end_col] = df[end_col].where(df[end_col].isna() | (df[end_col] >= df["start_date"]), df["start_date"])
    truth = pd.concat(truth_parts, ignore_index=True) if truth_parts else pd.DataFrame()
    return tables, truth, future_costs


def default_truth_dates(start: str, years: int) -> list[str]:
    """Yearly index dates, back from the last one with a full 12-month horizon to start + 24 months."""
    months = _month_starts(np.datetime64(start, "D"), 12 * years)
    last = len(months) - 13
    return sorted(str(months[i]) for i in range(last, 23, -12))


@dataclass(frozen=True)
class _Plan:
    """What every chunk of one population shares (pickled to the workers of ``jobs``)."""

    n_people: int
    chunk_size: int
    seed: int
    start: np.datetime64
    months: np.ndarray
    practices: pd.DataFrame
    truth_steps: dict[int, str]
    n_futures: int

    @property
    def n_chunks(self) -> int:
        return -(-self.n_people // self.chunk_size)

    def people(self, chunk_no: int) -> tuple[int, int]:
        """(first person, number of people) of a chunk."""
        first = chunk_no * self.chunk_size
        return first, min(self.chunk_size, self.n_people - first)

    def chunk(self, chunk_no: int):
        first, n = self.people(chunk_no)
        return _chunk(first, n, chunk_no, seed=self.seed, start=self.start, months=self.months,
                      practices=self.practices, truth_steps=self.truth_steps, n_futures=self.n_futures)


def _plan(n_people: int, *, start: str, years: int, seed: int, truth_dates: list[str] | None, n_futures: int,
          chunk_size: int, n_practices: int | None) -> _Plan:
    start_d = np.datetime64(start, "D")
    if start_d != start_d.astype("datetime64[M]").astype("datetime64[D]"):
        raise InvalidInputError(f"start must be the first of a month, got {start}")
    months = _month_starts(start_d, 12 * years)
    truth_dates = default_truth_dates(start, years) if truth_dates is None else list(truth_dates)
    truth_steps = {}
    for d in truth_dates:
        pos = np.flatnonzero(months[:-12] == np.datetime64(d, "D"))
        if pos.size == 0:
            raise InvalidInputError(f"truth date {d} must be the first of a month with 12 months of data after it "
                             f"(between {months[0]} and {months[-13]})")
        truth_steps[int(pos[0])] = str(np.datetime64(d, "D"))
    return _Plan(n_people=n_people, chunk_size=chunk_size, seed=seed, start=start_d, months=months,
                 practices=_practices(n_people, seed, n_practices), truth_steps=truth_steps, n_futures=n_futures)


def iter_population(n_people: int, *, start: str, years: int, seed: int, truth_dates: list[str] | None = None,
                    n_futures: int = 12, chunk_size: int = 50_000, n_practices: int | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[dict, pd.DataFrame, dict]]:
    """Generate the population chunk by chunk (bounded memory); yields (tables, truth, future costs)."""
    plan = _plan(n_people, start=start, years=years, seed=seed, truth_dates=truth_dates, n_futures=n_futures,
                 chunk_size=chunk_size, n_practices=n_practices)
    done = 0
    for chunk_no in range(plan.n_chunks):
        yield plan.chunk(chunk_no)
        done += plan.people(chunk_no)[1]
        if progress:
            progress(done, n_people)


_COST_PARTS = ("quiet_weight", "cost_without_electives", "elective_rate", "elective_others", "branch_weight",
               "branch_cost_without_first", "branch_first_emergency")


def finish_truth(truth: pd.DataFrame, future_costs: list[dict], *, top_fraction: float = 0.05) -> pd.DataFrame:
    """Add p_high_cost: the chance a person's next-12-month cost is in the top ``top_fraction`` of
    adults alive at the index date.

    The threshold is the cost above which the adults' mean chance is exactly ``top_fraction``; each
    person's chance is the mean over their simulated futures of :func:`high_cost_chance`.
    """
    from scipy.optimize import brentq

    if truth.empty:
        return truth
    out = []
    for date, group in truth.groupby("index_date", sort=True):
        key = str(pd.Timestamp(date).date())
        parts = [fc[key][0] for fc in future_costs if key in fc]
        pooled = {k: np.concatenate([p[k] for p in parts], axis=1) for k in _COST_PARTS}
        adult = group["_age"].to_numpy() >= 18
        adults = {k: v[:, adult] for k, v in pooled.items()}

        def excess(log_t: float) -> float:
            return float(high_cost_chance(np.exp(log_t), **adults).mean()) - top_fraction

        # The share above t falls from 1 (t = 0) to 0; the root is a cost in pounds.
        log_t = brentq(excess, 0.0, np.log(1e9), xtol=1e-6)
        g = group.copy()
        # Above 1 only where a few futures' unbiased draws overshoot a chance of almost 1.
        g["p_high_cost"] = np.minimum(high_cost_chance(np.exp(log_t), **pooled).mean(0), 1.0)
        out.append(g)
    return pd.concat(out, ignore_index=True).drop(columns="_age")


def generate_population(n_people: int, *, start: str = "2021-11-01", years: int = 5, seed: int = 42,
                        truth_dates: list[str] | None = None, n_futures: int = 12, chunk_size: int = 50_000,
                        n_practices: int | None = None) -> SynthResult:
    """Generate a synthetic linked population in memory (use :func:`write_population` for large N)."""
    parts, truths, costs = [], [], []
    for tables, truth, fc in iter_population(n_people, start=start, years=years, seed=seed, truth_dates=truth_dates,
                                             n_futures=n_futures, chunk_size=chunk_size, n_practices=n_practices):
        parts.append(tables)
        truths.append(truth)
        costs.append(fc)
    tables = {name: pd.concat([p[name] for p in parts if name in p], ignore_index=True)
              for name in TABLES if any(name in p for p in parts)}
    truth = finish_truth(pd.concat(truths, ignore_index=True), costs)
    end = _month_starts(np.datetime64(start, "D"), 12 * years)[-1] - np.timedelta64(1, "D")
    meta = {"generator": "riskstrat.synth", "n_people": n_people, "seed": seed, "start": start,
            "extract_end": str(end), "years": years, "n_futures": n_futures,
            "truth_dates": sorted({str(pd.Timestamp(d).date()) for d in truth["index_date"]}) if len(truth) else []}
    return SynthResult(tables=tables, truth=truth, metadata=meta)


def _prepared(task: tuple[_Plan, int, pd.Timestamp | None]):
    """One chunk as written: its tables as Arrow (cut at the extract end if one is given), its truth, and
    the future costs the high-cost truth needs, in float32. Serial runs and workers both call this, so
    both write the same bytes."""
    plan, chunk_no, cut = task
    tables, truth, fc = plan.chunk(chunk_no)
    if cut is not None:
        tables = cut_tables(tables, extract_end=cut)
    arrows = {name: canonical_to_arrow(name, df) for name, df in tables.items()}
    costs = {k: ({part: a.astype(np.float32) for part, a in v[0].items()}, v[1]) for k, v in fc.items()}
    return arrows, truth, costs


@contextmanager
def _prepared_chunks(plan: _Plan, *, cut: pd.Timestamp | None, jobs: int) -> Iterator[Iterator]:
    """The prepared chunks in order: made here one at a time (``jobs=1``), or in worker processes."""
    tasks = [(plan, chunk_no, cut) for chunk_no in range(plan.n_chunks)]
    if jobs == 1 or plan.n_chunks == 1:
        # One BLAS thread, as in the workers: the same bytes as with more (checked), and at 20,000 people
        # 7.2 s of CPU against 11.7 s with two threads that mostly spin on the small matrix products.
        with threadpool_limits(limits=1, user_api="blas"):
            yield (_prepared(task) for task in tasks)
        return

    def describe(chunk_no: int) -> str:
        first, n = plan.people(chunk_no)
        return f"chunk {chunk_no} (people {first:,} to {first + n - 1:,})"

    with OrderedJobs(_prepared, tasks, jobs=jobs, name="riskstrat-synth", describe=describe) as results:
        yield results


def write_population(out_dir, n_people: int, *, start: str = "2021-11-01", years: int = 5, seed: int = 42,
                     truth_dates: list[str] | None = None, n_futures: int = 12, chunk_size: int = 50_000,
                     n_practices: int | None = None, extract_end: str | None = None,
                     progress: Callable[[int, int], None] | None = None, stamp: bool = True,
                     jobs: int = 1) -> dict:
    """Generate and write a synthetic linked data set chunk by chunk (bounded memory), atomically.

    Writes one Parquet file per canonical table, ``dataset.json`` (generator settings and the
    extract end date) and the ground truth in ``ground_truth/truth.parquet``, apart from the tables.
    Returns the metadata written to ``dataset.json``.

    ``extract_end`` (a date before the end of the ``years`` simulated) writes the extract as it
    stood on that date (:func:`riskstrat.data.synth.cut.cut_tables`): the same seed without it writes the
    later extract, holding exactly the same records up to that date (a monthly refresh).

    ``jobs`` above 1 makes the chunks in that many worker processes (:class:`riskstrat.data.synth.jobs.OrderedJobs`)
    while this process writes them in order: the same files, byte for byte, as ``jobs=1``; about two
    chunks per worker in memory at once. A worker that fails stops the run and nothing is written.
    Workers are spawned (fresh interpreters that import the calling script): a script that calls this
    with ``jobs`` above 1 needs the ``if __name__ == "__main__":`` guard, as for any ``multiprocessing``.

    With ``stamp`` (the default) the folder is validated once written and stamped
    (:func:`riskstrat.data.validate.stamp_data_dir`), so that runs on it verify hashes instead of
    checking every row again.
    """
    import json
    from pathlib import Path

    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    check_jobs(jobs)
    check_replaceable(out_dir, "data set")  # before generating anything
    full_end = _month_starts(np.datetime64(start, "D"), 12 * years)[-1] - np.timedelta64(1, "D")
    cut = None
    if extract_end is not None:
        cut = pd.Timestamp(extract_end).normalize()
        if not pd.Timestamp(start) <= cut < pd.Timestamp(full_end):
            raise InvalidInputError(f"extract end {cut.date()} must fall within the {years} years simulated, from {start} "
                             f"and before {full_end}")
    plan = _plan(n_people, start=start, years=years, seed=seed, truth_dates=truth_dates, n_futures=n_futures,
                 chunk_size=chunk_size, n_practices=n_practices)
    with atomic_path(out_dir, directory=True, kind="data set") as tmp, \
            _prepared_chunks(plan, cut=cut, jobs=jobs) as chunks:
        writers: dict[str, pq.ParquetWriter] = {}
        truths, costs, counts = [], [], {}
        done = 0
        try:
            for chunk_no, (arrows, truth, fc) in enumerate(chunks):
                for name, arrow in arrows.items():
                    if name not in writers:
                        writers[name] = pq.ParquetWriter(tmp / f"{name}.parquet", arrow.schema, compression="zstd")
                    writers[name].write_table(arrow)
                    counts[name] = counts.get(name, 0) + arrow.num_rows
                del arrows
                truths.append(truth)
                costs.append(fc)
                done += plan.people(chunk_no)[1]
                if progress:
                    progress(done, n_people)
        finally:
            for w in writers.values():
                w.close()
        truth = finish_truth(pd.concat(truths, ignore_index=True), costs)
        if cut is not None and len(truth):
            truth = cut_truth(truth, extract_end=cut)
        end = str(cut.date()) if cut is not None else str(full_end)
        meta = {"generator": "riskstrat.synth", "n_people": n_people, "seed": seed, "start": start, "currency": "GBP",
                "extract_end": end, **({"cut_from": str(full_end)} if cut is not None else {}),
                "years": years, "n_futures": n_futures, "chunk_size": chunk_size,
                "truth_dates": sorted({str(pd.Timestamp(d).date()) for d in truth["index_date"]}) if len(truth) else [],
                "row_counts": counts}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        if len(truth):
            (tmp / "ground_truth").mkdir()
            truth.to_parquet(tmp / "ground_truth" / "truth.parquet", index=False)
        if stamp:  # validated once, as made; the stamp names files, not the temporary folder
            stamp_data_dir(tmp)
    return meta
