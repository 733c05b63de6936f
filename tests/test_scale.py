"""apply_scale_32 / apply_scale_16 / reciprocal_scale: the Numba helpers against their spec
twins over the full int32 / int48 ranges, and hand-checked rounding goldens."""
from hypothesis import given, settings
from hypothesis import strategies as st

from tosaint.kernels import namespace

NB, SP = namespace("numba"), namespace("spec")
I32 = st.integers(-2 ** 31, 2 ** 31 - 1)
I48 = st.integers(-2 ** 47, 2 ** 47 - 1)


def _exact_32(value, multiplier, shift, double_round):
    """Independent Python-integer model of the spec formula (scale_helpers.tosac)."""
    rnd = 1 << (shift - 1)
    if double_round and shift > 31:
        rnd += (1 << 30) if value >= 0 else -(1 << 30)
    return (value * multiplier + rnd) >> shift


@settings(max_examples=400, deadline=None)
@given(I32, st.integers(0, 2 ** 31 - 1), st.integers(2, 62), st.booleans())
def test_apply_scale_32_matches_twin(value, multiplier, shift, double_round):
    r_nb, ok_nb = NB.apply_scale_32(value, multiplier, shift, double_round)
    r_sp, ok_sp = SP.apply_scale_32(value, multiplier, shift, double_round)
    assert bool(ok_nb) == bool(ok_sp)
    in_range = -(1 << (shift - 1)) <= value < (1 << (shift - 1))
    want = _exact_32(value, multiplier, shift, double_round)
    assert bool(ok_sp) == (in_range and -2 ** 31 <= want < 2 ** 31)
    if ok_sp:
        assert int(r_nb) == int(r_sp) == want


@settings(max_examples=100, deadline=None)
@given(I32, st.integers(-2 ** 31, -1) | st.integers(0, 2 ** 31 - 1),
       st.integers(-128, 127), st.booleans())
def test_apply_scale_32_requires(value, multiplier, shift, double_round):
    """multiplier < 0 or shift outside 2..62 always fails the REQUIRE, on both sides."""
    _, ok_nb = NB.apply_scale_32(value, multiplier, shift, double_round)
    _, ok_sp = SP.apply_scale_32(value, multiplier, shift, double_round) if 1 <= shift <= 63 \
        else (None, False)
    if multiplier < 0 or not 2 <= shift <= 62:
        assert not ok_nb and not ok_sp


@settings(max_examples=400, deadline=None)
@given(I48, st.integers(0, 2 ** 15 - 1), st.integers(2, 62))
def test_apply_scale_16_matches_twin(value, multiplier, shift):
    r_nb, ok_nb = NB.apply_scale_16(value, multiplier, shift)
    r_sp, ok_sp = SP.apply_scale_16(value, multiplier, shift)
    want = (value * multiplier + (1 << (shift - 1))) >> shift
    assert bool(ok_nb) == bool(ok_sp) == (-2 ** 31 <= want < 2 ** 31)
    if ok_sp:
        assert int(r_nb) == int(r_sp) == want


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2 ** 31 - 1))
def test_reciprocal_scale_matches_twin(count):
    m_nb, s_nb = NB.reciprocal_scale(count)
    m_sp, s_sp = SP.reciprocal_scale(count)
    assert (int(m_nb), int(s_nb)) == (int(m_sp), int(s_sp))
    assert 2 ** 30 <= m_sp < 2 ** 31 + 2 ** 30


def test_rounding_goldens():
    # x / 8 with multiplier 2^30, shift 33 (tosa-facts 1.3)
    xs = [4, 12, 20, -4, -12, -20]                      # 0.5 1.5 2.5 -0.5 -1.5 -2.5
    single = [1, 2, 3, 0, -1, -2]                        # half up
    double = [1, 2, 3, -1, -2, -3]                       # halves away from zero (shift > 31)
    for impl in (NB, SP):
        assert [int(impl.apply_scale_32(x, 1 << 30, 33, False)[0]) for x in xs] == single
        assert [int(impl.apply_scale_32(x, 1 << 30, 33, True)[0]) for x in xs] == double
        # shift <= 31: double rounding changes nothing
        assert [int(impl.apply_scale_32(x, 1 << 30, 31 - 2, True)[0]) for x in (1, -1)] == [2, -2]
        # the value range REQUIRE: 2^29 with shift 30 fails although 2^30/2^30 is "scale 1"
        assert not impl.apply_scale_32(1 << 29, 1 << 30, 30, False)[1]
        assert impl.apply_scale_32((1 << 29) - 1, 1 << 30, 30, False)[1]
        # apply_scale_16: no value-range REQUIRE, only the int32 result check
        assert impl.apply_scale_16(-(2 ** 47), 1 << 14, 30)[1]
        assert int(impl.apply_scale_16(-(2 ** 47), 1 << 14, 30)[0]) == -(2 ** 31)
        assert not impl.apply_scale_16(2 ** 47 - 1, 1 << 14, 30)[1]
        assert int(impl.count_leading_zeros(0)) == 32
        assert int(impl.count_leading_zeros(-1)) == 0
        assert (int(impl.reciprocal_scale(2)[0]), int(impl.reciprocal_scale(2)[1])) == \
            ((2 ** 30 + 1) * 2 // 2, 31)
