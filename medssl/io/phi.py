"""Patient data rules. UIDs become short salted hashes; patient-identifying DICOM attributes
(DICOM PS3.15 Annex E style) are never copied into ``Scan.meta``, logs or errors, and appear
in ``Scan.phi`` / ``dicom_tags`` only when the caller asks to reveal them.

Salt: ``$MEDSSL_UID_SALT`` when set, else a random per-install salt kept in
``$XDG_CACHE_HOME/medssl/salt`` (default ``~/.cache/medssl/salt``, created mode 0600).
Without a writable cache the salt is derived from the machine id and user (a warning says
so): stable on that machine, never random per process. Hashes made with different salts
differ; ``salt_id()`` (recorded in manifests) tells salts apart without revealing them."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HASH_LEN = 12
HIDDEN = "<hidden>"

# Attributes that identify the patient, the visit or the staff, and free text that may
# (study, series and protocol descriptions, comments): PS3.15 Annex E, basic profile. Every
# UI, PN, DA, DT, TM value and private tag is also treated as PHI, whatever its keyword.
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
    StudyDescription SeriesDescription ProtocolName RequestedProcedureDescription
    PerformedProcedureStepDescription ScheduledProcedureStepDescription ReasonForStudy
    RequestedProcedureComments ImagingServiceRequestComments StudyComments AcquisitionComments
    DerivationDescription AcquisitionDeviceProcessingDescription ContrastBolusAgent TextComments
    TextString InterpretationText ReasonForTheRequestedProcedure DischargeDiagnosisDescription
    PatientTransportArrangements SpecialNeeds MedicalAlerts Allergies
    """.split()
)
PHI_VRS = frozenset({"UI", "PN", "DA", "DT", "TM"})

# What ``reveal_phi=True`` copies into ``Scan.phi``.
REVEAL_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "AccessionNumber", "InstitutionName", "StudyDate", "StudyDescription", "SeriesDescription",
    "ProtocolName", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
)  # fmt: skip


def _salt_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medssl" / "salt"


@lru_cache(maxsize=None)
def _file_salt(path: str) -> str:
    file = Path(path)
    try:
        if file.is_file():
            return _read_salt(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        salt = secrets.token_hex(16)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return _read_salt(file)
        with os.fdopen(fd, "w") as f:
            f.write(salt)
        return salt
    except OSError:
        return _fallback_salt(str(file.parent))


@lru_cache(maxsize=None)
def _fallback_salt(where: str) -> str:
    log.warning("cannot keep a UID salt in %s; using one derived from this machine's id (stable on this "
                "machine; set MEDSSL_UID_SALT to share series hashes between machines)", where)  # fmt: skip
    return machine_salt()


def _read_salt(file: Path) -> str:
    for _ in range(50):  # another process may have created the file and not yet written it
        salt = file.read_text().strip()
        if salt:
            return salt
        time.sleep(0.01)
    raise OSError(f"{file} is empty")


def machine_salt() -> str:
    """A salt without any file of ours, stable per machine (or container) and user: from the
    systemd / D-Bus machine id, else the host name. Never random per process, so hashes in a
    manifest still match on the next run."""
    machine = ""
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            machine = Path(candidate).read_text().strip()
        except OSError:
            continue
        if machine:
            break
    user = getattr(os, "getuid", lambda: 0)()
    return hashlib.sha256(f"medssl-uid-salt:{machine or socket.gethostname()}:{user}".encode()).hexdigest()[:32]


def uid_salt() -> str:
    if os.environ.get("MEDSSL_UID_SALT"):
        return os.environ["MEDSSL_UID_SALT"]
    try:
        path = _salt_path()
    except RuntimeError:  # no home folder
        return _fallback_salt("a home folder (there is none)")
    return _file_salt(str(path))


def salt_id() -> str:
    """A fingerprint of the salt in use (not the salt itself): manifests record it, so that
    series hashes made with another salt are recognised as such."""
    return hashlib.sha256(f"medssl-salt-id:{uid_salt()}".encode()).hexdigest()[:8]


def uid_hash(uid: object) -> str:
    """Short salted hash of a UID (or any identifier); '' stays ''."""
    text = str(uid or "").strip()
    if not text:
        return ""
    return hashlib.sha256(f"{uid_salt()}:{text}".encode()).hexdigest()[:HASH_LEN]


def is_uid_hash(text: str) -> bool:
    """A ``uid_hash`` or a prefix of one (6 to 12 lower-case hex digits), as --series takes."""
    return 6 <= len(text) <= HASH_LEN and all(c in "0123456789abcdef" for c in text)


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
