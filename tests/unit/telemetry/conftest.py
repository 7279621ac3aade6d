from tests.unit.runtime.conftest import probe

__all__ = ["probe"]
