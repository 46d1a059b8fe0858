"""Validate FHIR resources readhub serves with fhir.resources (R4B models, which match R4
for Patient, ServiceRequest, DiagnosticReport, Bundle and OperationOutcome).

    python fhir_check.py FILE...

Each FILE holds one JSON resource. Prints JSON: for each file, "ok" or the validation error.
"""
import json
import sys

from fhir.resources.R4B import get_fhir_model_class

out = []
for path in sys.argv[1:]:
    doc = json.load(open(path, encoding="utf-8"))
    try:
        get_fhir_model_class(doc["resourceType"]).model_validate(doc)
        out.append("ok")
    except Exception as e:  # noqa: BLE001 - the error is the answer
        out.append(str(e)[:2000])
print(json.dumps(out, ensure_ascii=False))
