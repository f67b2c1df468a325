"""YAML errors name the file, line and key, never a value, and chain only a harmless cause."""

from __future__ import annotations

import pytest

from reconciler import errors
from reconciler.manager import stamp
from reconciler.repo import bundle

SECRET = (b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: ran\n"
          b"stringData:\n  password: hunter2\n  password: s3cret\n")


def test_a_duplicate_key_names_the_key_not_its_values() -> None:
    """A Secret's duplicate key is reported by key and position; neither value appears."""
    with pytest.raises(errors.YAMLSyntaxError) as caught:
        bundle.parse_documents(SECRET, file="sites/a/manifests/s.yaml")
    error = caught.value
    assert str(error) == 'sites/a/manifests/s.yaml:8:3: invalid YAML: found duplicate key ' \
                         '"password"'
    assert error.problem == 'found duplicate key "password"'
    assert error.__cause__ is None and error.__suppress_context__  # ruamel's text quotes them


def test_stamping_words_a_duplicate_key_the_same_way() -> None:
    """publish's stamping reports the same duplicate key without its values."""
    with pytest.raises(stamp.StampError) as caught:
        stamp.stamp_file(SECRET, file="s.yaml", intent_id="i-1")
    assert str(caught.value) == 's.yaml:8:3: invalid YAML: found duplicate key "password"'
    assert caught.value.__cause__ is None


def test_other_yaml_errors_keep_ruamels_problem_and_chain_it() -> None:
    """A plain syntax problem keeps ruamel's words; a forbidden character chains its cause."""
    with pytest.raises(errors.YAMLSyntaxError, match=r"^f.yaml:1:5: invalid YAML: mapping "
                                                      "values are not allowed"):
        bundle.parse_documents(b"a: b: c\n", file="f.yaml")
    with pytest.raises(errors.YAMLSyntaxError) as caught:
        bundle.parse_documents(b"a: \x07\n", file="f.yaml")
    assert caught.value.__cause__ is not None
