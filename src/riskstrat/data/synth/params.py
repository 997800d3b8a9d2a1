"""Constants of the synthetic population's generating process, calibrated to English rates.

Calibration targets (see ``docs/synthetic-population.md`` and ``tests/test_synth.py``): about 7-10%
of adults with an emergency admission a year (over a third at 85+), about 1% deaths a year, the top
5% of people by cost carrying 40-50% of all cost, social care concentrated in the old and frail.
"""

from __future__ import annotations

import numpy as np

# Age distribution at start (England-like), 5-year bands 0-4 ... 95-99: relative weights.
AGE_BAND_WEIGHTS = np.array([5.6, 6.0, 6.1, 5.8, 6.0, 6.6, 7.0, 6.9, 6.5, 6.3,
                             6.9, 6.8, 5.9, 5.2, 5.1, 3.9, 2.7, 1.6, 0.8, 0.25])
ETHNICITY_WEIGHTS = {"white": 0.81, "asian": 0.096, "black": 0.042, "mixed": 0.03, "other": 0.022}

# Long-term conditions: (annual onset hazard at age 60, age slope per year, deprivation effect,
#  weight in the latent severity h, BNF chapter of its repeat prescriptions).
CONDITIONS: dict[str, tuple[float, float, float, float, str]] = {
    "hypertension": (0.012, 0.045, 0.15, 0.05, "02"),
    "diabetes": (0.0065, 0.03, 0.35, 0.25, "06"),
    "asthma": (0.0011, 0.0, 0.2, 0.20, "03"),
    "copd": (0.0020, 0.06, 0.6, 0.55, "03"),
    "chd": (0.0030, 0.06, 0.3, 0.25, "02"),
    "heart_failure": (0.0010, 0.085, 0.3, 0.65, "02"),
    "atrial_fibrillation": (0.0018, 0.08, 0.0, 0.25, "02"),
    "stroke": (0.0015, 0.075, 0.25, 0.35, "02"),
    "ckd": (0.0030, 0.085, 0.2, 0.35, "09"),
    "cancer": (0.0040, 0.05, 0.1, 0.45, "08"),
    "dementia": (0.0004, 0.14, 0.1, 0.45, "04"),
    "depression": (0.0035, 0.0, 0.4, 0.15, "04"),
    "smi": (0.0004, 0.0, 0.6, 0.35, "04"),
    "epilepsy": (0.0002, 0.0, 0.3, 0.35, "04"),
}
CONDITION_NAMES = tuple(CONDITIONS)
# Multimorbidity clusters: having `a` multiplies the onset hazard of `b` by exp(value).
CONDITION_LINKS = {
    ("diabetes", "ckd"): 0.8, ("diabetes", "chd"): 0.5, ("diabetes", "heart_failure"): 0.4,
    ("hypertension", "chd"): 0.5, ("hypertension", "stroke"): 0.5, ("hypertension", "ckd"): 0.5,
    ("hypertension", "heart_failure"): 0.4, ("chd", "heart_failure"): 1.0,
    ("atrial_fibrillation", "stroke"): 0.8, ("copd", "heart_failure"): 0.4,
    ("depression", "dementia"): 0.3, ("stroke", "dementia"): 0.6,
}

# Latent severity h = AGE_SLOPE*(age-50) + DEP*(5.5-decile) + sum(w_k LTC_k) + FRAILTY*f
#                     + practice effect + person effect + recent-admission term.
AGE_SLOPE = 0.008
OLD_AGE_SLOPE = 0.018      # extra slope per year above 70
MULTIMORBIDITY = 0.35      # extra severity with 3+ conditions
YOUNG_ADULT = 0.5          # injuries and crises at 18-25, fading by 25
CARE_HOME_EFFECT = -0.3    # care homes manage some crises without admission
MENTAL_HEALTH_DEPRIVED = 0.8
DIABETES_CKD = 0.6
LTC_MIDLIFE = 1.4
LTC_OLD = 0.8
FRAILTY_THRESHOLD_EFFECT = 0.7   # frail people cross a threshold of vulnerability
DEP_EFFECT = 0.06
FRAILTY_EFFECT = 1.6
PERSON_EFFECT_SD = 0.5
DRIFT_AR = 0.97             # month-to-month persistence of the wandering health term
DRIFT_SD = 0.09             # its monthly innovation (stationary sd about 0.37)
PRACTICE_EFFECT_SD = 0.15
# An emergency admission raises near-term risk, much more and for longer in the chronically ill
# (two or more conditions, or frail): their admissions are decompensations that recur, while a
# healthy person's admission is mostly a one-off (injury, appendicitis). Models that only add up
# features miss this interaction; trees find it, as in real data.
RECENT_DECAY = 0.75          # monthly decay of the recent-admission term
RECENT_DECAY_CHRONIC = 0.88
RECENT_JUMP = 0.2            # added per emergency admission (two at most a month)
RECENT_JUMP_CHRONIC = 1.0
RECENT_MAX = 1.4
CHRONIC_LTC = 2
CHRONIC_FRAILTY = 0.3
CLINICAL_MAX = 3.5           # soft ceiling of the clinical severity (before the recent-admission term)
# Care-seeking: a person-level habit (unobserved) that drives A&E and GP use but not admissions.
# It is strongest in younger adults, so their A&E visits say little about admission risk, while an
# old person's A&E visit does: another interaction an additive model cannot represent.
SEEK_SD = 1.2
SEEK_GP = 0.5               # share of the habit that shows in GP contacts
SOCIAL_CARE_EFFECT = 0.25    # receiving home care

# Monthly event rates at h = 0.
EMERGENCY_RATE = 0.0028
AE_RATE = 0.024              # A&E attendances not ending in admission
AE_BEFORE_ADMISSION = 0.75   # share of emergency admissions arriving through A&E
GP_RATE = 0.33
OUTPATIENT_RATE = 0.09
ELECTIVE_RATE = 0.013   
MATERNITY_RATE = 0.0045      # women 18-44
ACUTE_ITEM_RATE = 0.3
REPEAT_ITEMS = 1.6           # mean repeat items per condition per month

# Deaths: Gompertz in age times exp(DEATH_H * clinical severity).
DEATH_LOG_A = -11.5
DEATH_AGE = 0.094
DEATH_H = 0.55

# Frailty: drifts toward FRAILTY_AGE*(age-55)+ FRAILTY_LTC*n_ltc, jumps after emergency admissions.
FRAILTY_AGE = 0.009
FRAILTY_LTC = 0.035
FRAILTY_PULL = 0.03
FRAILTY_JUMP = 0.07

# Social care (monthly hazards).
HOME_CARE_RATE = 0.0004
HOME_CARE_FRAILTY = 4.5
HOME_CARE_END_RATE = 0.03    # monthly
RESIDENTIAL_RATE = 0.003
NURSING_RATE = 0.008
REABLEMENT_PROB = 0.12       # after an emergency admission, age 65+
WEEKLY_COST = {"home_care": 180.0, "reablement": 300.0, "residential": 900.0, "nursing": 1100.0}

# Costs (pounds; lognormal with these medians and sigma).
COST_EMERGENCY = (2000.0, 0.35)
COST_BED_DAY = 110.0
MAJOR_EPISODE_SHARE = 0.12       # emergency admissions that are major (ICU, trauma, surgery)
MAJOR_EPISODE_FACTOR = 4.0
COST_ELECTIVE = (1500.0, 0.9)      # day cases to major surgery: a long tail
COST_MATERNITY = (2800.0, 0.3)
COST_AE = (190.0, 0.35)
COST_OUTPATIENT = (150.0, 0.35)
COST_GP = (38.0, 0.3)
COST_ITEM = {"02": 8.0, "03": 30.0, "04": 12.0, "06": 35.0, "08": 60.0, "09": 10.0,
             "01": 7.0, "05": 5.0, "10": 6.0, "11": 8.0, "12": 6.0, "13": 9.0}
ACUTE_CHAPTERS = ("01", "05", "10", "11", "12", "13")

# ICD-10 codes for emergency admissions: (code, condition that makes it likelier or None).
EMERGENCY_DIAGNOSES = (
    ("J44.1", "copd"), ("I50.0", "heart_failure"), ("I48.9", "atrial_fibrillation"),
    ("E11.6", "diabetes"), ("I21.9", "chd"), ("I63.9", "stroke"), ("N17.9", "ckd"),
    ("F03", "dementia"), ("J45.9", "asthma"), ("C80.9", "cancer"),
    ("R07.4", None), ("R10.4", None), ("J18.9", None), ("N39.0", None), ("R55", None),
    ("S72.0", None), ("K59.0", None), ("L03.1", None), ("R69", None),
)
ELECTIVE_DIAGNOSES = ("H25.9", "M17.1", "K80.2", "M16.1", "K40.9", "N40", "Z51.1", "I25.1")
SPECIALTIES = ("general medicine", "cardiology", "respiratory", "diabetes", "orthopaedics",
               "ophthalmology", "gastroenterology", "oncology", "dermatology", "general surgery")
