"""Seeded generators of the synthetic benchmark data sets.

Every generator is a pure function of its arguments: the same sizes and seed
give the same rows, so each engine's subprocess can rebuild the data itself
(or read the cached CSV the lme4 runner needs) and all engines fit one data set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _balanced_codes(rng: np.random.Generator, n_rows: int, n_levels: int) -> np.ndarray:
    # A shuffled balanced assignment (rather than uniform draws) so that every
    # level is observed and the group sizes do not vary with the seed.
    return rng.permutation(np.arange(n_rows) % n_levels)


def users_items(
    n_users: int = 4_000, n_items: int = 600, n_rows: int = 200_000, seed: int = 20240501
) -> pd.DataFrame:
    """Crossed users × items data for ``y ~ x + (x | user) + (1 | item)``.

    Each user rates ``n_rows / n_users`` items drawn at random; users have a
    correlated random intercept and slope in ``x``, items a random intercept.

    Parameters
    ----------
    n_users, n_items, n_rows : int
        Numbers of users, items and rows.
    seed : int
        Seed of the numpy generator.

    Returns
    -------
    pandas.DataFrame
        Columns ``y``, ``x`` (float64), ``user``, ``item`` (int64 labels).
    """
    rng = np.random.default_rng(seed)
    user = _balanced_codes(rng, n_rows, n_users)
    item = _balanced_codes(rng, n_rows, n_items)
    x = rng.standard_normal(n_rows)
    # User effects: sd 1.0 (intercept) and 0.5 (slope), correlation 0.3.
    cov = np.array([[1.0, 0.15], [0.15, 0.25]])
    user_effects = rng.multivariate_normal(np.zeros(2), cov, size=n_users)
    item_effects = 0.7 * rng.standard_normal(n_items)
    y = (
        1.0
        + 0.5 * x
        + user_effects[user, 0]
        + user_effects[user, 1] * x
        + item_effects[item]
        + rng.standard_normal(n_rows)
    )
    return pd.DataFrame({"y": y, "x": x, "user": user, "item": item})


def nested_areas(
    n_subjects: int = 1_000_000,
    n_areas: int = 1_000,
    rows_per_subject: int = 10,
    seed: int = 635,
) -> pd.DataFrame:
    """Longitudinal subjects nested in areas: the lme4 issue 635 model.

    ``y ~ time + (1 | area/subject)``; subject labels are unique across
    areas, each subject is measured at ``time = 0 … rows_per_subject - 1``.

    Parameters
    ----------
    n_subjects, n_areas, rows_per_subject : int
        Sizes; rows = ``n_subjects * rows_per_subject``.
    seed : int
        Seed of the numpy generator.

    Returns
    -------
    pandas.DataFrame
        Columns ``y``, ``time`` (float64), ``area``, ``subject`` (int64 labels),
        sorted by subject as longitudinal data usually are.
    """
    rng = np.random.default_rng(seed)
    subject_area = _balanced_codes(rng, n_subjects, n_areas)
    subject = np.repeat(np.arange(n_subjects), rows_per_subject)
    time = np.tile(np.arange(rows_per_subject, dtype=np.float64), n_subjects)
    area_effects = 0.8 * rng.standard_normal(n_areas)
    subject_effects = 1.2 * rng.standard_normal(n_subjects)
    y = (
        2.0
        + 0.3 * time
        + area_effects[subject_area][subject]
        + subject_effects[subject]
        + rng.standard_normal(subject.size)
    )
    return pd.DataFrame({"y": y, "time": time, "area": subject_area[subject], "subject": subject})


def intercept_slope(n_rows: int, rows_per_group: int = 20, seed: int = 1) -> pd.DataFrame:
    """Grouped data for the scaling sweep's ``y ~ x + (x | g)``.

    The number of groups grows with the rows (``n_rows / rows_per_group``), as
    it does when a study enrols more subjects.

    Parameters
    ----------
    n_rows : int
        Number of rows (rounded to a whole number of groups, at least 5).
    rows_per_group : int
        Rows per level of ``g``.
    seed : int
        Seed of the numpy generator.

    Returns
    -------
    pandas.DataFrame
        Columns ``y``, ``x`` (float64) and ``g`` (int64 labels).
    """
    rng = np.random.default_rng(seed)
    n_groups = max(5, round(n_rows / rows_per_group))
    g = np.repeat(np.arange(n_groups), rows_per_group)
    x = rng.uniform(0.0, 10.0, size=g.size)
    cov = np.array([[4.0, 0.3], [0.3, 0.25]])
    effects = rng.multivariate_normal(np.zeros(2), cov, size=n_groups)
    y = 10.0 + 1.0 * x + effects[g, 0] + effects[g, 1] * x + 2.0 * rng.standard_normal(g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def students_teachers(
    n_students: int = 10_000,
    n_teachers: int = 1_400,
    n_schools: int = 80,
    n_grades: int = 4,
    move_rate: float = 0.035,
    seed: int = 18,
) -> pd.DataFrame:
    """Students followed over grades, a new teacher each year (issue 18's design).

    ``score ~ grade + (1 | student) + (1 | teacher) + (1 | school)``: every
    teacher teaches one grade in one school; a student enters at a random
    grade, stays to the last one (one to four years, about 25 000 rows in
    all) and gets a teacher of that grade in the school each year; a fraction
    ``move_rate`` of the students change school once.  The teachers' block of
    the Schur complement is then nearly block-diagonal by school.

    Parameters
    ----------
    n_students, n_teachers, n_schools, n_grades : int
        Sizes (teachers are spread evenly over schools and grades).
    move_rate : float
        Fraction of the students who change school.
    seed : int
        Seed of the numpy generator.

    Returns
    -------
    pandas.DataFrame
        Columns ``score``, ``grade`` (float64), ``student``, ``teacher``,
        ``school`` (int64 labels).
    """
    rng = np.random.default_rng(seed)
    teacher_school = np.arange(n_teachers) % n_schools
    teacher_grade = (np.arange(n_teachers) // n_schools) % n_grades
    by_cell = {}
    for t in range(n_teachers):
        by_cell.setdefault((teacher_school[t], teacher_grade[t]), []).append(t)
    first_grade = rng.integers(0, n_grades, n_students)
    home = rng.integers(0, n_schools, n_students)
    moves = rng.random(n_students) < move_rate
    new_home = rng.integers(0, n_schools, n_students)
    student, grade, teacher = [], [], []
    for s in range(n_students):
        years = range(first_grade[s], n_grades)
        move_at = rng.integers(first_grade[s], n_grades) if moves[s] else n_grades
        for g in years:
            school = new_home[s] if g >= move_at else home[s]
            options = by_cell[(school, g)]
            student.append(s)
            grade.append(g)
            teacher.append(options[rng.integers(len(options))])
    student = np.array(student)
    grade = np.array(grade, dtype=np.float64)
    teacher = np.array(teacher)
    school = teacher_school[teacher]
    y = (
        50.0
        + 2.0 * grade
        + 5.0 * rng.standard_normal(n_students)[student]
        + 2.0 * rng.standard_normal(n_teachers)[teacher]
        + 3.0 * rng.standard_normal(n_schools)[school]
        + 4.0 * rng.standard_normal(len(student))
    )
    return pd.DataFrame(
        {"score": y, "grade": grade, "student": student, "teacher": teacher, "school": school}
    )


def binary_crossed(
    n_subjects: int = 1_000, n_items: int = 200, n_rows: int = 50_000, seed: int = 20261207
) -> pd.DataFrame:
    """Crossed subjects × items with a 0/1 outcome, for ``y ~ x + (1 | subject) + (1 | item)``.

    A logistic model: subjects' intercepts with sd 1.0, items' with sd 0.6,
    slope 0.5 in a standard normal ``x``, overall log-odds −0.3.

    Returns
    -------
    pandas.DataFrame
        Columns ``y`` (0/1 as float64), ``x``, ``subject``, ``item`` (int64 labels).
    """
    rng = np.random.default_rng(seed)
    subject = _balanced_codes(rng, n_rows, n_subjects)
    item = _balanced_codes(rng, n_rows, n_items)
    x = rng.standard_normal(n_rows)
    eta = -0.3 + 0.5 * x + rng.normal(0, 1.0, n_subjects)[subject]
    eta += rng.normal(0, 0.6, n_items)[item]
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
    return pd.DataFrame({"y": y, "x": x, "subject": subject, "item": item})
