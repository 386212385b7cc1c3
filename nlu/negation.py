"""Negation marks for the character model: "别提醒了", "不要提醒", "提醒停发" and "提醒不想收" share no
character n-gram that says "off", so a linear model on n-grams keeps reading them as "提醒我". Each
negation word becomes one mark (¬) and each "again" word another (↺), so "¬提醒" is learnt once for all
of them. Words taken from the training examples; the text is already simplified and half-width.
"""
from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer

NEGATION = re.compile(r"不再|不要|不想|不用|不必|甭|别|停掉|停发|停了|停止|关掉|关了|关闭|取消|退订|退掉|免打扰"
                      r"|no more|stop|unsubscribe|don't|dont")
AGAIN = re.compile(r"重新|恢复|再开|又想|开回|打开|继续|照常")
NOT, RENEW = "¬", "↺"


def marked(text: str) -> str:
    return AGAIN.sub(RENEW, NEGATION.sub(NOT, text.lower()))


class NegationMarkedNgrams(BaseEstimator, TransformerMixin):
    """Character n-grams of the marked text, and whether it has a negation or an "again" word at all."""

    def __init__(self, max_ngram: int = 3) -> None:
        self.max_ngram = max_ngram

    def fit(self, texts: Iterable[str], y=None) -> "NegationMarkedNgrams":
        self.vectorizer_ = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, self.max_ngram), sublinear_tf=True)
        self.vectorizer_.fit([marked(t) for t in texts])
        return self

    def transform(self, texts: Iterable[str]) -> sp.csr_matrix:
        marks = [marked(t) for t in texts]
        flags = np.array([[NOT in t, RENEW in t] for t in marks], dtype=float).reshape(-1, 2)
        return sp.hstack([self.vectorizer_.transform(marks), sp.csr_matrix(flags)], format="csr")
