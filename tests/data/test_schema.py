"""vaekit.data.schema and vaekit.data.tabular: kinds inferred from the cells, the schema's JSON
round trip, transforms that invert, encode -> decode giving back every observed cell, and
one-line errors that name the column."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.core.composite import Block, CompositeLikelihood
from vaekit.data.base import DataError
from vaekit.data.schema import ColumnSpec, Schema, decode, encode, infer_schema
from vaekit.data.tabular import fit_transform, forward, inverse, read_table, write_table

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "penguins.csv"


def kinds(schema: Schema) -> dict[str, str]:
    return {c.name: c.kind for c in schema.columns}


# --- the penguins ---------------------------------------------------------------------


def test_penguins_schema_and_exact_round_trip():
    table = read_table(PENGUINS)
    assert list(table) == [
        "species",
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    assert len(table["species"]) == 344
    schema = infer_schema(table)
    assert kinds(schema) == {
        "species": "categorical",
        "island": "categorical",
        "bill_length_mm": "continuous",
        "bill_depth_mm": "continuous",
        "flipper_length_mm": "integer",
        "body_mass_g": "integer",
        "sex": "binary",
        "year": "categorical",  # 3 whole numbers, each seen ~115 times
    }
    levels = {c.name: c.levels for c in schema.columns if c.levels}
    assert levels["species"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert levels["island"] == ["Biscoe", "Dream", "Torgersen"]
    assert levels["sex"] == ["female", "male"]
    assert levels["year"] == ["2007", "2008", "2009"]
    x, mask = encode(table, schema)
    assert x.shape == (344, 8) and x.dtype == np.float32
    assert mask.sum(0).tolist() == [344, 344, 342, 342, 342, 342, 333, 344]
    assert (np.isnan(x) == ~mask).all()
    back = decode(x, schema)
    assert list(back) == list(table)
    numeric = {"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"}
    for name, cells in table.items():
        want = [None if c == "NA" else float(c) if name in numeric else c for c in cells]
        assert back[name] == want, name  # exact: the transforms round to the data's decimals
    assert all(isinstance(v, int) for v in back["body_mass_g"] if v is not None)


# --- inference rules ------------------------------------------------------------------


def test_kind_rules():
    n = 40
    table = {
        "flag": ["yes", "no"] * (n // 2),
        "truth": ["True", "false"] * (n // 2),
        "bit": [1, 0] * (n // 2),
        "two_words": ["M", "F"] * (n // 2),
        "rating": [str(1 + i % 5) for i in range(n)],  # 5 whole numbers, repeated
        "count": [str(i * 3) for i in range(n)],  # 40 whole numbers
        "few_ints_no_repeats": [str(i % 20) for i in range(n)],  # 20 > 10 levels
        "price": [f"{1.5 + i * 0.25}" for i in range(n)],
        "colour": ["red", "green", "blue", "red"] * (n // 4),
        "constant": ["x"] * n,
    }
    schema = infer_schema(table)
    assert kinds(schema) == {
        "flag": "binary",
        "truth": "binary",
        "bit": "binary",
        "two_words": "binary",
        "rating": "categorical",
        "count": "integer",
        "few_ints_no_repeats": "integer",
        "price": "continuous",
        "colour": "categorical",
        "constant": "categorical",
    }
    levels = {c.name: c.levels for c in schema.columns}
    assert levels["flag"] == ["no", "yes"]  # the "no"-like level is index 0
    assert levels["truth"] == ["false", "True"]
    assert levels["bit"] == [0, 1]
    assert levels["two_words"] == ["F", "M"]
    assert levels["rating"] == ["1", "2", "3", "4", "5"]
    assert levels["colour"] == ["blue", "green", "red"]
    assert levels["constant"] == ["x"]
    # 5 distinct whole numbers in only 6 rows do not repeat enough: integer, not categorical
    assert kinds(infer_schema({"a": ["1", "2", "3", "4", "5", "1"]})) == {"a": "integer"}
    assert kinds(infer_schema({"a": ["1", "2", "3", "4", "5", "1"]}, max_int_levels=2)) == {
        "a": "integer"
    }


def test_missing_cells_in_every_spelling():
    nan = float("nan")
    cells = ["1.5", "", "NA", "NaN", "nan", "null", None, nan, " ", "2.5", "7.25", "N/A"]
    schema = infer_schema({"v": cells})
    assert kinds(schema) == {"v": "continuous"}
    x, mask = encode({"v": cells}, schema)
    assert mask[:, 0].tolist() == [True] + [False] * 8 + [True, True, False]
    x0, _ = encode({"v": cells}, schema, missing=0.0)
    assert np.isfinite(x0).all() and (x0[~mask] == 0).all()
    assert decode(x, schema)["v"] == [1.5] + [None] * 8 + [2.5, 7.25, None]


def test_python_values_keep_their_types():
    table = {
        "n": [3, 7, None, 12, 5, 40, 2, 9],
        "f": [0.5, float("nan"), 2.25, -1.0, 3.5, 0.0, 8.75, 1.0],
        "b": [True, False, True, None, False, True, True, False],
        "c": ["a", "b", "c", "a", "b", "c", "a", None],
    }
    schema = infer_schema(table)
    assert kinds(schema) == {"n": "integer", "f": "continuous", "b": "binary", "c": "categorical"}
    assert schema.columns[2].levels == [False, True]
    back = decode(encode(table, schema)[0], schema)
    assert back["n"] == [3, 7, None, 12, 5, 40, 2, 9]
    assert all(type(v) is int for v in back["n"] if v is not None)
    assert back["f"] == [0.5, None, 2.25, -1.0, 3.5, 0.0, 8.75, 1.0]
    assert back["b"] == [True, False, True, None, False, True, True, False]
    assert back["c"] == ["a", "b", "c", "a", "b", "c", "a", None]


class FakeFrame:
    """What a DataFrame offers the schema: `columns` and df[name].tolist()."""

    class Series(list):
        def tolist(self) -> list:
            return list(self)

    def __init__(self, data: dict[str, list]):
        self.data = data
        self.columns = list(data)

    def __getitem__(self, name: str) -> FakeFrame.Series:
        return self.Series(self.data[name])


def test_a_dataframe_is_read_through_columns_and_tolist():
    data = {"a": [1.5, 2.5, float("nan"), 4.0], "b": ["x", "y", "x", None]}
    schema = infer_schema(FakeFrame(data))
    assert kinds(schema) == {"a": "continuous", "b": "binary"}
    _, mask = encode(FakeFrame(data), schema)
    assert mask.tolist() == [[True, True], [True, True], [False, True], [True, False]]


def test_a_pandas_dataframe():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {"n": pd.array([1, 2, None, 40, 5], dtype="Int64"), "s": ["u", "v", None, "w", "u"]}
    )
    schema = infer_schema(df)
    assert kinds(schema) == {"n": "integer", "s": "categorical"}
    assert decode(encode(df, schema)[0], schema)["n"] == [1, 2, None, 40, 5]


# --- transforms -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["quantile", "standard"])
def test_transforms_invert_and_stay_in_range(name: str):
    rng = np.random.default_rng(0)
    skewed = np.round(np.exp(rng.normal(0, 1.5, 500)), 3)  # lognormal, with ties
    bimodal = np.concatenate([rng.normal(-5, 0.5, 300), rng.normal(8, 1, 200)])
    for v in (skewed, bimodal, np.array([4.0, 4.0, 4.0]), np.array([1.0, 2.0])):
        t = fit_transform(name, v)
        assert json.loads(json.dumps(t)) == t  # plain JSON
        z = forward(t, v)
        assert np.isfinite(z).all()
        back = inverse(t, z.astype(np.float32))
        np.testing.assert_allclose(back, v, rtol=1e-4, atol=1e-4)
        wild = inverse(t, np.array([-40.0, 40.0]))
        assert wild.tolist() == [v.min(), v.max()]
    t = fit_transform(name, skewed)
    z = forward(t, skewed)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.1
    if name == "quantile":  # the skew is gone
        skew = float(((z - z.mean()) ** 3).mean() / z.std() ** 3)
        assert abs(skew) < 0.2
        assert len(t["quantiles"]) == 500 and t["decimals"] == 3


def test_integer_columns_decode_to_integers_in_range():
    table = {"k": [str(v) for v in [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89]]}
    schema = infer_schema(table)
    assert kinds(schema) == {"k": "integer"}
    out = decode(np.array([[-9.0], [0.1], [0.37], [9.0]]), schema)["k"]
    assert all(type(v) is int for v in out)
    assert out[0] == 0 and out[-1] == 89 and 0 <= out[1] <= 89


# --- the JSON schema ------------------------------------------------------------------


def test_schema_json_round_trip(tmp_path: Path):
    table = read_table(PENGUINS)
    schema = infer_schema(table, transform="standard")
    d = schema.to_dict()
    text = json.dumps(d)
    again = Schema.from_dict(json.loads(text))
    assert again == schema
    schema.save(tmp_path / "schema.json")
    loaded = Schema.load(tmp_path / "schema.json")
    assert loaded == schema
    np.testing.assert_array_equal(encode(table, loaded)[0], encode(table, schema)[0])
    assert [b for b in loaded.blocks()] == [
        Block("categorical", 3),
        Block("categorical", 3),
        Block("continuous"),
        Block("continuous"),
        Block("integer"),
        Block("integer"),
        Block("binary", 2),
        Block("categorical", 3),
    ]


def test_a_partial_schema_is_fitted_with_its_kinds():
    table = read_table(PENGUINS)
    given = {
        "columns": [
            {"name": n, "kind": k}
            for n, k in kinds(infer_schema(table)).items()
            if n not in ("year", "bill_depth_mm")
        ]
    }
    given["columns"].append({"name": "year", "kind": "integer", "transform": "standard"})
    given["columns"].append({"name": "bill_depth_mm", "kind": "continuous"})
    schema = infer_schema(table, schema=given)
    assert schema.names[-2:] == ["year", "bill_depth_mm"]  # the schema's order
    year = schema.columns[-2]
    assert year.kind == "integer" and year.transform["name"] == "standard"
    assert schema.columns[-1].transform["name"] == "quantile"
    back = decode(encode(table, schema)[0], schema)
    assert back["year"] == [int(v) for v in table["year"]]
    with pytest.raises(DataError, match="no fitted levels"):
        encode(table, Schema.from_dict(given))


# --- errors: one line, naming the column ----------------------------------------------


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_encode_errors_name_the_column():
    table = {"c": ["a", "b", "a", "c"] * 3, "v": ["1.5", "2", "3.25", "4"] * 3}
    schema = infer_schema(table)
    cases = [
        ({"c": ["a", "z"], "v": ["1", "2"]}, "column 'c' has category 'z' (row 2)"),
        ({"c": ["a", "b"], "v": ["1", "abc"]}, "column 'v' is continuous but row 2 holds 'abc'"),
        ({"c": ["a", "b"]}, "lacks column 'v'"),
        ({"c": ["a"], "v": ["1"], "w": ["2"]}, "has column 'w' that the schema does not know"),
        ({"c": [], "v": []}, "no rows"),
        ({"c": ["a", "b"], "v": ["1"]}, "differ in length"),
    ]
    for bad, message in cases:
        with pytest.raises(DataError, match=re.escape(message)) as e:
            encode(bad, schema)
        one_line(e)
    ints = infer_schema({"k": [str(i) for i in range(30)]})
    with pytest.raises(DataError, match=re.escape("column 'k' is integer but row 1 holds '2.5'")):
        encode({"k": ["2.5"]}, ints)


def test_inference_errors_name_the_column():
    cases = [
        ({"a": ["1", "2"], "gone": ["", "NA"]}, "column 'gone' is all missing"),
        ({"id": [f"u{i:03d}" for i in range(30)]}, "column 'id' looks like an identifier"),
        ({"id": ["u0", *(f"u{i}" for i in range(39))]}, "(one level per row: 39 levels in 40"),
        ({"m": [str(i) for i in range(30)] + ["oops"]}, "column 'm' holds numbers but row 31"),
        ({}, "no columns"),
        ([1, 2, 3], "dict of columns or a pandas DataFrame"),
    ]
    for bad, message in cases:
        with pytest.raises(DataError, match=re.escape(message)) as e:
            infer_schema(bad)
        one_line(e)
    with pytest.raises(DataError, match="'b' is binary in the schema but holds 3"):
        infer_schema({"b": ["x", "y", "z"]}, schema={"columns": [{"name": "b", "kind": "binary"}]})


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"columns": [{"name": "a", "kind": "numeric"}]}, "kind 'numeric' is not one of"),
        ({"columns": [{"name": "a", "kind": "binary", "levels": [1, 2, 3]}]}, "2 levels, got 3"),
        ({"columns": [{"name": "a", "kind": "categorical", "levels": ["x", "x"]}]}, "repeat"),
        ({"columns": [{"name": "a", "kind": "integer", "levels": [1]}]}, "has no levels"),
        ({"columns": [{"name": "a", "kind": "categorical", "transform": "standard"}]}, "no trans"),
        ({"columns": [{"name": "a", "kind": "continuous", "transform": "log"}]}, "transform is"),
        (
            {"columns": [{"name": "a", "kind": "continuous", "transform": {"name": "standard"}}]},
            None,
        ),
        (
            {
                "columns": [
                    {"name": "a", "kind": "integer", "transform": {"name": "standard", "mean": 0}}
                ]
            },
            "missing: min, max, std",
        ),
        (
            {
                "columns": [
                    {
                        "name": "a",
                        "kind": "continuous",
                        "transform": {
                            "name": "quantile",
                            "min": 0,
                            "max": 1,
                            "tail": 0.1,
                            "quantiles": [2, 1],
                        },
                    }
                ]
            },
            "invalid parameters",
        ),
        ({"columns": [{"name": "a", "kind": "continuous", "transform": 5}]}, "transform is"),
        ({"columns": [{"name": "a", "kind": "binary", "colour": 1}]}, "unknown field"),
        ({"columns": [{"name": "a", "kind": "binary"}] * 2}, "'a' appear twice"),
        ({"columns": []}, "non-empty 'columns'"),
        ({"format": "other/1", "columns": [{"name": "a", "kind": "binary"}]}, "format"),
        ({"columns": [{"kind": "binary"}]}, "non-empty 'name'"),
    ],
)
def test_schema_json_that_does_not_fit_is_refused(d: dict, message: str | None):
    if message is None:  # a bare transform name in an object: fitted later, fine
        assert not Schema.from_dict(d).columns[0].fitted
        return
    with pytest.raises(DataError, match=re.escape(message)) as e:
        Schema.from_dict(d)
    one_line(e)


def test_csv_reading_writing_and_its_errors(tmp_path: Path):
    path = tmp_path / "t.csv"
    table = {"name": ["a, b", 'say "hi"', "", "ü"], "v": [1, 2.5, None, -3]}
    write_table(path, table)
    back = read_table(path)
    assert back == {"name": ["a, b", 'say "hi"', "", "ü"], "v": ["1", "2.5", "", "-3"]}
    cases = [
        ("a,b\n1,2\n3\n", "line 3 has 1 cells but the header has 2 columns"),
        ("", "is empty"),
        ("a,b\n", "no rows"),
        ("a,a\n1,2\n", "name every column once"),
    ]
    for text, message in cases:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DataError, match=re.escape(message)) as e:
            read_table(path)
        one_line(e)
    path.write_bytes(b"a,b\n\xff,1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_table(path)


# --- with the composite likelihood ----------------------------------------------------


def test_likelihood_draws_decode_to_valid_cells():
    table = read_table(PENGUINS)
    schema = infer_schema(table)
    lik = CompositeLikelihood(schema.blocks())
    assert lik.param_dim == 3 + 3 + 4 + 1 + 3
    x, mask = encode(table, schema)
    xt = torch.from_numpy(x)
    lik.check_support(xt)
    params = torch.randn(len(x), lik.param_dim, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(lik.log_prob(params, xt)).all()
    with torch.no_grad():
        draws = decode(lik.sample(params, torch.Generator().manual_seed(1)), schema)
        means = decode(lik.mean(params), schema)
    for out in (draws, means):
        assert set(out["species"]) <= {"Adelie", "Chinstrap", "Gentoo"}
        assert set(out["sex"]) <= {"female", "male"}
        assert all(type(v) is int and 2700 <= v <= 6300 for v in out["body_mass_g"])
        assert all(32.1 <= v <= 59.6 for v in out["bill_length_mm"])
    assert (mask == ~np.isnan(x)).all()


def test_column_spec_block():
    assert ColumnSpec("s", "categorical", ["a", "b", "c"]).block == Block("categorical", 3)
    assert ColumnSpec("v", "continuous", [], {"name": "standard"}).fitted is False
