"""Patient data rules. UIDs become short salted hashes; patient-identifying DICOM attributes
(DICOM PS3.15 Annex E style) are never copied into ``Scan.meta``, logs or errors, and appear
in ``Scan.phi`` / ``dicom_tags`` only when the caller asks to reveal them.

Salt: ``$MEDSSL_UID_SALT`` when set, else a random per-install salt kept in
``$XDG_CACHE_HOME/medssl/salt`` (default ``~/.cache/medssl/salt``, created mode 0600).
Without a writable cache the salt is random per process, so hashes change between runs."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HASH_LEN = 12
HIDDEN = "<hidden>"

# Attributes that identify the patient, the visit or the staff (PS3.15 Annex E, basic
# profile, plus a few common ones). Every UI, PN, DA, DT, TM value and private tag is also
# treated as PHI, whatever its keyword.
PHI_KEYWORDS = frozenset(
    """
    PatientName PatientID IssuerOfPatientID OtherPatientIDs OtherPatientIDsSequence
    OtherPatientNames PatientBirthName PatientMotherBirthName PatientBirthDate PatientBirthTime
    PatientAge PatientAddress PatientTelephoneNumbers PatientTelecomInformation
    PatientInsurancePlanCodeSequence PatientReligiousPreference PatientComments
    MilitaryRank BranchOfService MedicalRecordLocator EthnicGroup Occupation
    AdditionalPatientHistory PatientSize PatientWeight PatientState PregnancyStatus
    ResponsiblePerson ResponsibleOrganization CountryOfResidence RegionOfResidence
    AccessionNumber StudyID InstitutionName InstitutionAddress InstitutionalDepartmentName
    ReferringPhysicianName ReferringPhysicianAddress ReferringPhysicianTelephoneNumbers
    PhysiciansOfRecord PerformingPhysicianName NameOfPhysiciansReadingStudy OperatorsName
    RequestingPhysician ScheduledPerformingPhysicianName ConsultingPhysicianName
    StationName DeviceSerialNumber PlateID DetectorID GantryID
    RequestAttributesSequence ReferencedPatientSequence AdmissionID AdmittingDiagnosesDescription
    CurrentPatientLocation PatientInstitutionResidence ServiceEpisodeID VisitComments
    ImageComments RequestedProcedureID PerformedProcedureStepID ScheduledProcedureStepID
    FillerOrderNumberImagingServiceRequest PlacerOrderNumberImagingServiceRequest
    ContentCreatorName PersonName VerifyingObserverName
    """.split()
)
PHI_VRS = frozenset({"UI", "PN", "DA", "DT", "TM"})

# What ``reveal_phi=True`` copies into ``Scan.phi``.
REVEAL_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "AccessionNumber", "InstitutionName", "StudyDate", "StudyDescription",
    "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
)  # fmt: skip


def _salt_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medssl" / "salt"


@lru_cache(maxsize=None)
def _file_salt(path: str) -> str:
    file = Path(path)
    try:
        if file.is_file():
            return file.read_text().strip()
        file.parent.mkdir(parents=True, exist_ok=True)
        salt = secrets.token_hex(16)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(salt)
        return salt
    except FileExistsError:
        return file.read_text().strip()
    except OSError:
        log.warning("cannot keep a UID salt in %s; UID hashes will differ between runs", file.parent)
        return secrets.token_hex(16)


def uid_salt() -> str:
    return os.environ.get("MEDSSL_UID_SALT") or _file_salt(str(_salt_path()))


def uid_hash(uid: object) -> str:
    """Short salted hash of a UID (or any identifier); '' stays ''."""
    text = str(uid or "").strip()
    if not text:
        return ""
    return hashlib.sha256(f"{uid_salt()}:{text}".encode()).hexdigest()[:HASH_LEN]


def is_phi_element(keyword: str, vr: str, is_private: bool) -> bool:
    return is_private or keyword in PHI_KEYWORDS or vr in PHI_VRS


def phi_from_dataset(ds: Any) -> dict[str, str]:
    """The identifying values shown only on request (viewer reveal toggle, --show-phi)."""
    out: dict[str, str] = {}
    for keyword in REVEAL_KEYWORDS:
        value = ds.get(keyword)
        if value not in (None, ""):
            out[keyword] = str(value)
    return out
