"""Built-in synthetic data for demos, the CLI and benchmarks.

:class:`SyntheticFactors` is a ground-truth data set in disentanglement_lib's protocol
(``num_factors``, ``factors_num_values``, ``sample_factors``, ``sample_observations_from_factors``,
``sample``) with dSprites' factor sizes by default; its "observations" are the factor values
themselves, so a *representation function* decides how disentangled the codes are.
:func:`representation` builds three kinds of such functions, which is enough to exercise every
metric exactly as the reference would on real encoders.
"""

from __future__ import annotations

import numpy as np

DSPRITES_FACTOR_SIZES = (3, 6, 40, 32, 32)


class SyntheticFactors:
    """Factors drawn uniformly and independently; observations are the factor values."""

    #: One randint per factor in sample_factors; observations draw nothing (fastdis.data's
    #: GroundTruthData explains the declaration).
    plain_randint_sampling = True

    def __init__(self, factor_sizes=DSPRITES_FACTOR_SIZES):
        self.factor_sizes = tuple(int(c) for c in factor_sizes)

    @property
    def num_factors(self):
        return len(self.factor_sizes)

    @property
    def factors_num_values(self):
        return list(self.factor_sizes)

    @property
    def observation_shape(self):
        return [len(self.factor_sizes)]

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(c, size=num) for c in self.factor_sizes], axis=1)

    def sample_observations_from_factors(self, factors, random_state):
        return np.asarray(factors, dtype=np.float64)

    def sample_observations(self, num, random_state):
        return self.sample_observations_from_factors(
            self.sample_factors(num, random_state), random_state
        )

    def sample(self, num, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)


def representation(kind: str, factor_sizes=DSPRITES_FACTOR_SIZES, n_codes: int = 10, seed=0):
    """A representation function of observations from :class:`SyntheticFactors`.

    ``kind``: "disentangled" (code j = scaled factor j plus small noise, extra codes are noise),
    "entangled" (a random linear mix of all factors plus noise), "noise" (independent of the
    factors). The noise is a deterministic function of the observation, so encoding the same
    observation twice gives the same code, as a VAE's mean does.
    """
    sizes = np.asarray(factor_sizes, dtype=np.float64)
    k = sizes.size
    rs = np.random.RandomState(seed)
    mix = rs.normal(size=(k, n_codes))
    hash_weights = rs.normal(size=(k, n_codes)) * 1e3

    def pseudo_noise(x):
        return np.sin(x @ hash_weights + 0.5)  # deterministic "noise" in [-1, 1]

    def encode(observations):
        scaled = np.asarray(observations, dtype=np.float64) / np.maximum(sizes - 1, 1)
        noise = pseudo_noise(np.asarray(observations, dtype=np.float64))
        if kind == "disentangled":
            codes = 0.05 * noise
            codes[:, :k] += scaled[:, : min(k, n_codes)]
        elif kind == "entangled":
            codes = scaled @ mix + 0.1 * noise
        elif kind == "noise":
            codes = noise
        else:
            raise ValueError(
                f"kind must be 'disentangled', 'entangled' or 'noise'; got {kind!r}."
            )
        return codes.astype(np.float32)

    return encode
