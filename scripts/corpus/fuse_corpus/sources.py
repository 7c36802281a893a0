"""What goes into corpus v2: the Debian packages, the files used from each, and how each file is labelled.

Every package is a :class:`Package` row of :data:`PACKAGES`: what it contributes (speech or noise), its licence,
the tar members to extract, and a lister that turns the extracted tree into :class:`Source` rows (one input file,
or for stitched typing several, with language, speaker, split unit and pool). Measured contents and the reasons
for every choice are in `../shared/notes/corpus-v2.md` and scripts/corpus/README.md.

The reserved packages (independent evaluation material) are refused: :func:`check_allowed` raises
:class:`ReservedPackageError` (an AssertionError that `python -O` cannot turn off) for a name or pattern of
:data:`RESERVED_PACKAGES` / :data:`RESERVED_PATTERNS`, and :func:`check_table` runs it over a whole table.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------------------------------------- reserved

# Independent evaluation material (../shared/notes/corpus-v2.md): never for training, settings or dev sets.
RESERVED_PACKAGES = frozenset(
    {"fillets-ng-data-cs", "pocketsphinx-testdata", "wesnoth-1.16-data", "klettres-data", "gcin-voice"}
)
# The es voice of asterisk-core-sounds is the en voice's speaker; wav and g722 opsound are the same music.
RESERVED_PATTERNS = ("asterisk-core-sounds-en-*", "asterisk-core-sounds-es-*", "asterisk-moh-opsound-*")


class ReservedPackageError(AssertionError):
    """A reserved evaluation package was named as a corpus source."""


def is_reserved(package: str) -> bool:
    """True for a reserved package name or one matching a reserved pattern (case-insensitive)."""
    name = package.strip().lower()
    return name in RESERVED_PACKAGES or any(fnmatch.fnmatchcase(name, p) for p in RESERVED_PATTERNS)


def check_allowed(package: str) -> str:
    """Returns `package`; raises :class:`ReservedPackageError` if it is reserved for independent evaluation."""
    if is_reserved(package):
        raise ReservedPackageError(
            f"{package} is reserved for independent evaluation (../shared/notes/corpus-v2.md): "
            "it must never be used for training, choosing settings or a dev set."
        )
    return package


def check_table(packages: Sequence[Package]) -> None:
    """Refuses a source table that names a reserved package, or names a package twice."""
    names = [check_allowed(p.name) for p in packages]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"the source table names {', '.join(twice)} more than once.")


# ----------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Source:
    """One input of the corpus: a file in an extracted package (or several, stitched) and its labels.

    `unit` is what the split keeps whole (a scene, a voice, a prompt group, a noise recording); `pool` is the
    group within which ~5 % of the units go to valid. `decoder` is "soundfile", "g722" or "gsm" (ffmpeg), or
    "stitch" (key presses in `parts` laid out as typing, seeded by `name`).
    """

    package: str
    kind: str
    path: str
    origin: str
    name: str
    language: str
    speaker: str
    unit: str
    pool: str
    decoder: str = "soundfile"
    parts: tuple[str, ...] = ()
    noise_kind: str = ""


@dataclass(frozen=True)
class Inner:
    """A zip inside a package (`path` in the package) whose members matching `patterns` are unpacked to `dest`
    (relative to the extracted tree); the zip itself is not kept."""

    path: str
    dest: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class Package:
    """One Debian package of the corpus.

    `members` are tar wildcards of the files to extract; each of `listers` turns the extracted tree into sources
    (speech or noise). `priority` 0 packages must build; the others are skipped with a warning when they fail.
    """

    name: str
    licence: str
    members: tuple[str, ...]
    listers: tuple[Callable[[Package, Path], list[Source]], ...]
    description: str
    inner: Inner | None = None
    priority: int = 1


def sanitize(text: str) -> str:
    """A file-name-safe stem: runs of characters outside [A-Za-z0-9._-] become one underscore."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _files(root: Path, base: str, pattern: str, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files (no links: they duplicate another file) under root/base matching pattern, sorted."""
    found = [p for p in (root / base).glob(pattern) if p.is_file() and not p.is_symlink()]
    return sorted(p for p in found if p.suffix.lower() in suffixes)


def _origin(package: Package, root: Path, path: Path) -> str:
    """`package:/path/in/package`; a member of an inner zip reads `package:/path/of/zip:member`."""
    rel = path.relative_to(root).as_posix()
    if package.inner is not None and rel.startswith(package.inner.dest + "/"):
        return f"{package.name}:/{package.inner.path}:{rel[len(package.inner.dest) + 1 :]}"
    if rel.startswith("carved/"):
        return f"{package.name}:/{OPENTTD_CAT}#{Path(rel).stem}"
    return f"{package.name}:/{rel}"


def _source(package: Package, root: Path, path: Path, name: str, kind: str = "speech", **labels) -> Source:
    return Source(
        package=package.name,
        kind=kind,
        path=str(path),
        origin=_origin(package, root, path),
        name=sanitize(name),
        **labels,
    )


# Keyword -> noise kind, first match wins (matched against the lower-case origin). Rough labels for the tables.
NOISE_KINDS = (
    ("typing", ("buckle",)),
    (
        "babble",
        (
            "restaurant",
            "tavern",
            "inn_",
            "biginn",
            "meal",
            "ration",
            "market",
            "crowd",
            "croud",
            "school",
            "lobby",
            "people",
            "residential",
            "commune",
            "chatter",
            "university",
        ),
    ),
    ("music", ("loop_", "flute", "ambi_piano", "/music/")),
    ("machine", ("windmill", "vinyl")),  # before "wind" of weather
    (
        "traffic",
        (
            "traffic",
            "trafic",
            "car_",
            "engine",
            "airplane",
            "jet",
            "dirttrack",
            "road",
            "rail",
            "train",
            "harbor",
            "harbour",
            "port",
            "tractor",
            "truck",
            "bus",
            "ship",
            "plane",
            "transport",
        ),
    ),
    ("weather", ("rain", "wind", "thunder", "storm", "snow", "blizzard")),
    ("water", ("river", "water", "wave", "sea", "ocean", "stream", "splash", "fountain")),
    (
        "animals",
        (
            "bird",
            "cricket",
            "frog",
            "wolf",
            "animal",
            "cow",
            "sheep",
            "horse",
            "donkey",
            "ox_",
            "boar",
            "coyote",
            "moose",
            "stag",
            "duck",
            "owl",
            "rooster",
            "chicken",
            "hawk",
            "farm",
            "jungle",
            "forest",
        ),
    ),
    (
        "machine",
        (
            "machine",
            "industr",
            "mill",
            "saw",
            "smith",
            "hammer",
            "anvil",
            "forge",
            "furnace",
            "mine",
            "weav",
            "stone",
            "wood",
            "clock",
            "static",
            "radio",
            "vinyl",
            "hum",
            "buzz",
            "drone",
            "build",
            "power",
            "fire",
            "spin",
            "grind",
            "mortar",
            "bubble",
            "metal",
            "tools",
        ),
    ),
)


# Kind of a noise recording that no keyword names, per package (else "ambience").
NOISE_KIND_DEFAULTS = {"openttd-opensfx": "traffic"}


def noise_kind(origin: str, default: str = "ambience") -> str:
    """A rough kind of a noise recording from keywords in its origin path (see :data:`NOISE_KINDS`)."""
    low = origin.lower()
    for kind, words in NOISE_KINDS:
        if any(word in low for word in words):
            return kind
    return default


def _noise(package: Package, root: Path, path: Path, name: str) -> Source:
    """A noise recording: its own unit (all its segments stay in one split)."""
    origin = _origin(package, root, path)
    unit = origin.split(":/", 1)[1]
    return _source(
        package,
        root,
        path,
        name,
        kind="noise",
        language="",
        speaker="",
        unit=unit,
        pool=package.name,
        noise_kind=noise_kind(origin, NOISE_KIND_DEFAULTS.get(package.name, "ambience")),
    )


# ----------------------------------------------------------------------------------------------- speech listers

FILLETS_SOUND = "usr/share/games/fillets-ng/sound"


def _fillets_speaker(stem: str) -> str:
    # File names are <level>-<character>-<line>: m = the small fish, v = the big fish, others per level.
    parts = stem.split("-")
    return f"fillets-{parts[1]}" if len(parts) >= 3 else "fillets"


def list_fillets_nl(package: Package, root: Path) -> list[Source]:
    """Dutch acted dialogue of Fish Fillets: one unit per level (scene), shared with the German lines."""
    out = []
    for path in _files(root, FILLETS_SOUND, "*/nl/*.ogg", (".ogg",)):
        level = path.parts[-3]
        out.append(
            _source(
                package,
                root,
                path,
                f"flnl__{level}__{path.stem}",
                language="nl",
                speaker=_fillets_speaker(path.stem),
                unit=f"fillets/{level}",
                pool="fillets",
            )
        )
    return out


def list_fillets_de(package: Package, root: Path) -> list[Source]:
    """The 9 German officer lines of level "elk" (the package's other sound/*/en files are effects and music)."""
    out = []
    for path in _files(root, FILLETS_SOUND, "elk/en/deu-p-*.ogg", (".ogg",)):
        out.append(
            _source(
                package,
                root,
                path,
                f"flde__elk__{path.stem}",
                language="de",
                speaker="fillets-deu-p",
                unit="fillets/elk",
                pool="fillets",
            )
        )
    return out


HEDGEWARS_SKIP = {"Robot", "Singer"}  # a vocoded robot voice; sung lines
# Voice pack -> language; the other packs speak English.
HEDGEWARS_LANGUAGES = {
    "Default_es": "es",
    "Default_pl": "pl",
    "Default_ru": "ru",
    "Default_uk": "uk",
    "Russian": "ru",
    "Russian_pl": "pl",
}


def list_hedgewars(package: Package, root: Path) -> list[Source]:
    """Acted exclamations of 13 voice packs (1-4 s); one unit per pack."""
    out = []
    for path in _files(root, "usr/share/games/hedgewars/Data/Sounds/voices", "*/*.ogg", (".ogg",)):
        pack = path.parts[-2]
        if pack in HEDGEWARS_SKIP:
            continue
        out.append(
            _source(
                package,
                root,
                path,
                f"hw__{pack}__{path.stem}",
                language=HEDGEWARS_LANGUAGES.get(pack, "en"),
                speaker=f"hedgewars-{pack}",
                unit=pack,
                pool=package.name,
            )
        )
    return out


def _prompt_group(rel_in_voice: str) -> str:
    """IVR prompts: the subfolder (digits, letters, ...) or, at the top, the name's prefix (vm-, conf-, queue-)."""
    parts = rel_in_voice.split("/")
    if len(parts) > 1:
        return parts[0]
    return re.split(r"[-_.]", parts[0], maxsplit=1)[0]


# Prompts that are not speech: beeps and the monkeys' screeching of the "tt-monkeys" demo.
ASTERISK_NOT_SPEECH = {"beep", "beeperr", "tt-monkeys"}


def _asterisk_lister(language: str, decoder: str, suffix: str, voice_glob: str = "*") -> Callable:
    def lister(package: Package, root: Path) -> list[Source]:
        base = root / "usr/share/asterisk/sounds"
        out = []
        for path in _files(root, "usr/share/asterisk/sounds", f"{voice_glob}/**/*{suffix}", (suffix,)):
            rel = path.relative_to(base).as_posix()
            voice, _, inside = rel.partition("/")
            if "silence" in inside.split("/")[:-1] or path.stem in ASTERISK_NOT_SPEECH:
                continue
            out.append(
                _source(
                    package,
                    root,
                    path,
                    f"{package.name}__{rel[: -len(suffix)]}",
                    language=language,
                    speaker=f"asterisk-{voice}",
                    unit=f"{voice}/{_prompt_group(inside)}",
                    pool=package.name,
                    decoder=decoder,
                )
            )
        return out

    lister.__doc__ = f"IVR prompts ({language}, {decoder}): one unit per prompt group; silence/ left out."
    return lister


TUXPAINT_STAMPS = "usr/share/tuxpaint/stamps"
TUXPAINT_DESC = re.compile(r"^(?P<stem>.+)_desc(?:_(?P<lang>[A-Za-z]{2,3})(?:_[A-Za-z]{2})?)?$")
NYNORSK = "nn"  # made with a speech synthesiser (both tuxpaint and ktuberling): never used


def list_tuxpaint(package: Package, root: Path) -> list[Source]:
    """Stamp descriptions, one voice per language (`*_desc_<lang>.ogg`, English `*_desc.ogg`).

    Unit: language + stamp category (the first two folders), pooled per language.
    """
    out = []
    for path in _files(root, TUXPAINT_STAMPS, "**/*_desc*", (".ogg", ".wav")):
        match = TUXPAINT_DESC.match(path.stem)
        if not match:
            continue
        language = (match.group("lang") or "en").lower()
        if language == NYNORSK:
            continue
        category = "/".join(path.relative_to(root / TUXPAINT_STAMPS).parts[:-1][:2])  # folders only
        rel = path.relative_to(root / TUXPAINT_STAMPS).with_suffix("").as_posix()
        out.append(
            _source(
                package,
                root,
                path,
                f"tux__{rel}",
                language=language,
                speaker=f"tuxpaint-{language}",
                unit=f"{language}/{category}",
                pool=f"tuxpaint/{language}",
            )
        )
    return out


def list_festvox_ru(package: Package, root: Path) -> list[Source]:
    """620 read Russian sentences of one male speaker; units of 25 consecutive sentences."""
    out = []
    base = "usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav"
    for path in _files(root, base, "*.wav", (".wav",)):
        number = int(re.sub(r"\D", "", path.stem) or 0)
        out.append(
            _source(
                package,
                root,
                path,
                f"fvru__{path.stem}",
                language="ru",
                speaker="festvox-msu_ru_nsh",
                unit=f"block{number // 25:03d}",
                pool=package.name,
            )
        )
    return out


def list_ktuberling(package: Package, root: Path) -> list[Source]:
    """Single words in 21 languages (1-2 voices each); one unit per language. `sr@*` copy `sr`; nn left out."""
    out = []
    for path in _files(root, "usr/share/ktuberling/sounds", "*/*", (".ogg", ".wav", ".opus", ".flac")):
        language = path.parts[-2]
        if language == NYNORSK or "@" in language:
            continue
        out.append(
            _source(
                package,
                root,
                path,
                f"ktub__{language}__{path.stem}",
                language=language,
                speaker=f"ktuberling-{language}",
                unit=language,
                pool=package.name,
            )
        )
    return out


ZERO_AD = "usr/share/games/0ad/mods/public/public.zip"
ZERO_AD_INNER = "public"
# Civilisation voice folders -> ISO 639-3 language of the lines.
ZERO_AD_LANGUAGES = {
    "greek": "grc",
    "latin": "la",
    "persian": "peo",
    "napatan": "xmr",
    "hellenic": "grc",
    "roman": "la",
    "iberian": "xib",
    "celtic": "cel",
    "carthaginian": "xpu",
}


def list_0ad_voices(package: Package, root: Path) -> list[Source]:
    """Unit acknowledgements of 0 A.D. (ancient languages), `audio/voice/<lang>/civ/*.ogg`; one unit per voice."""
    out = []
    base = f"{ZERO_AD_INNER}/audio/voice"
    for path in _files(root, base, "*/civ/**/*.ogg", (".ogg",)):
        rel = path.relative_to(root / base)
        folder = rel.parts[0]
        gender = "female" if "_female" in path.stem else "male"  # civ_female_* / civ_male_* (one voice each)
        out.append(
            _source(
                package,
                root,
                path,
                f"0ad__{rel.with_suffix('').as_posix()}",
                language=ZERO_AD_LANGUAGES.get(folder, folder),
                speaker=f"0ad-{folder}-{gender}",
                unit=f"{folder}/{gender}",
                pool=package.name,
            )
        )
    return out


WARZONE_SKIP = {"sfx", "nexus", "radclick"}  # effects; the NEXUS villain's processed voice; radio clicks


def list_warzone(package: Package, root: Path) -> list[Source]:
    """Mission and unit voice lines of Warzone 2100 (`base.wz` -> audio/), narrowband English."""
    out = []
    base = "wz/audio"
    for path in _files(root, base, "**/*", (".ogg", ".wav")):
        rel = path.relative_to(root / base)
        if rel.parts[0] in WARZONE_SKIP:
            continue
        folder = "/".join(rel.parts[:-1]) or "root"
        out.append(
            _source(
                package,
                root,
                path,
                f"wz__{rel.with_suffix('').as_posix()}",
                language="en",
                speaker=f"warzone-{rel.parts[0]}",
                unit=folder,
                pool=package.name,
            )
        )
    return out


# ----------------------------------------------------------------------------------------------- noise listers

MEGAGLEST_SKIP = {"hell/sounds/good_morning.wav"}  # a spoken "good morning": speech must not be noise


def list_megaglest(package: Package, root: Path) -> list[Source]:
    """Tileset ambiences and animal calls; one unit per recording."""
    base = "usr/share/games/megaglest/tilesets"
    out = []
    for path in _files(root, base, "*/sounds/*", (".ogg", ".wav", ".flac")):
        rel = path.relative_to(root / base).as_posix()
        if rel not in MEGAGLEST_SKIP:
            out.append(_noise(package, root, path, f"mg__{rel.replace('/sounds/', '__')}"))
    return out


def list_0ad_ambient(package: Package, root: Path) -> list[Source]:
    """0 A.D. ambiences: rain, wind, snowstorm, thunder, birds, river, waves, farm, port, market."""
    base = f"{ZERO_AD_INNER}/audio/ambient"
    return [
        _noise(package, root, p, f"0ad__{p.relative_to(root / base).with_suffix('').as_posix()}")
        for p in _files(root, base, "**/*", (".ogg", ".wav"))
    ]


# Ambiences, machines and babble of SuperTuxKart's data/sfx; screams, jingles, fanfares and the spoken airport
# announcement (sara_airport_pa: speech) are left out.
SUPERTUXKART_KEEP = (
    "airplane_jetEngine",
    "bowling_roll",
    "car_accel",
    "car_revup",
    "clock",
    "engine_large",
    "engine_small",
    "exotic-birds",
    "exotic-birds_2",
    "fireworks_show",
    "gnu_flute",
    "lenautile_restaurant",
    "machine_sound",
    "metal_clang",
    "rain",
    "river_loop",
    "skid",
    "spaceship",
    "static-radio",
    "thunder",
    "tractor_beam",
    "waterfall_loop_2",
)


def list_supertuxkart(package: Package, root: Path) -> list[Source]:
    base = "usr/share/games/supertuxkart/data/sfx"
    keep = set(SUPERTUXKART_KEEP)
    return [
        _noise(package, root, p, f"stk__{p.stem}") for p in _files(root, base, "*.ogg", (".ogg",)) if p.stem in keep
    ]


WIDELANDS_SKIP_TOP = {"military"}  # jingles; the top-level files are UI sounds


def list_widelands(package: Package, root: Path) -> list[Source]:
    """Taverns, workshops, farms and animals (data/sound/<group>/**, world/critters/**)."""
    base = "usr/share/games/widelands/data"
    out = []
    for path in _files(root, base, "sound/*/**/*.ogg", (".ogg",)) + _files(
        root, base, "world/critters/**/*.ogg", (".ogg",)
    ):
        rel = path.relative_to(root / base)
        if rel.parts[1] in WIDELANDS_SKIP_TOP:
            continue
        out.append(_noise(package, root, path, f"wl__{rel.with_suffix('').as_posix()}"))
    return out


def list_lincity(package: Package, root: Path) -> list[Source]:
    """City sounds of LinCity-NG: traffic, crowds, schools, industry (mostly 11 kHz)."""
    return [
        _noise(package, root, p, f"lc__{p.stem}")
        for p in _files(root, "usr/share/games/lincity-ng/sounds", "*.wav", (".wav",))
        if p.stem.lower() != "click"
    ]


# Typing made of bucklespring's key presses: takes of TYPING_SECONDS each, one unit (the same keyboard).
TYPING_TAKES = 4
TYPING_SECONDS = 30.0


def list_bucklespring(package: Package, root: Path) -> list[Source]:
    parts = tuple(str(p) for p in _files(root, "usr/share/buckle/wav", "*.wav", (".wav",)))
    if not parts:
        return []
    return [
        Source(
            package=package.name,
            kind="noise",
            path=parts[0],
            origin=f"{package.name}:/usr/share/buckle/wav#typing{take}",
            name=f"buckle__typing{take}",
            language="",
            speaker="",
            unit="typing",
            pool=package.name,
            decoder="stitch",
            parts=parts,
            noise_kind="typing",
        )
        for take in range(TYPING_TAKES)
    ]


SONIC_PI_PREFIXES = ("ambi_", "vinyl_", "loop_")
SONIC_PI_SKIP = {"ambi_choir"}  # sung voices


def list_sonic_pi(package: Package, root: Path) -> list[Source]:
    """Ambiences, vinyl noises and music-like loops of Sonic Pi's samples (FLAC)."""
    return [
        _noise(package, root, p, f"spi__{p.stem}")
        for p in _files(root, "usr/share/sonic-pi/samples", "*.flac", (".flac",))
        if p.stem.startswith(SONIC_PI_PREFIXES) and p.stem not in SONIC_PI_SKIP
    ]


OPENTTD_CAT = "usr/share/games/openttd/baseset/opensfx/opensfx.cat"


def carve_riff(blob: bytes) -> list[bytes]:
    """The complete RIFF/WAVE files inside a container (OpenTTD's opensfx.cat), in order."""
    out, start = [], blob.find(b"RIFF")
    while start >= 0:
        size = int.from_bytes(blob[start + 4 : start + 8], "little") + 8
        if blob[start + 8 : start + 12] == b"WAVE" and start + size <= len(blob):
            out.append(blob[start : start + size])
            start = blob.find(b"RIFF", start + size)
        else:
            start = blob.find(b"RIFF", start + 4)
    return out


def list_openttd(package: Package, root: Path) -> list[Source]:
    """The 73 clips of OpenTTD's sound set, carved out of opensfx.cat into `<root>/carved/NN.wav` (once)."""
    cat = root / OPENTTD_CAT
    if not cat.is_file():
        return []
    carved = root / "carved"
    if not (carved / ".done").is_file():
        carved.mkdir(exist_ok=True)
        for number, blob in enumerate(carve_riff(cat.read_bytes())):
            (carved / f"{number:02d}.wav").write_bytes(blob)
        (carved / ".done").write_text("")
    return [_noise(package, root, p, f"ottd__{p.stem}") for p in _files(root, "carved", "*.wav", (".wav",))]


# ----------------------------------------------------------------------------------------------- the table

AST = "./usr/share/asterisk/sounds/*"
ZERO_AD_ZIP = Inner(ZERO_AD, ZERO_AD_INNER, ("audio/voice/*", "audio/ambient/*"))
WARZONE_ZIP = Inner("usr/share/games/warzone2100/base.wz", "wz", ("audio/*",))

PACKAGES: tuple[Package, ...] = (
    # Speech (wideband sources; each file's bandwidth is measured, not assumed)
    Package(
        "fillets-ng-data-nl",
        "GPL-2",
        ("./usr/share/games/fillets-ng/sound/*/nl/*",),
        (list_fillets_nl,),
        "Dutch acted dialogue (Vorbis, band-limited near 4 kHz)",
        priority=0,
    ),
    Package(
        "fillets-ng-data",
        "GPL-2",
        ("./usr/share/games/fillets-ng/sound/elk/en/deu-p-*",),
        (list_fillets_de,),
        "9 German lines of level elk",
    ),
    Package(
        "hedgewars-data",
        "GFDL-1.3",
        ("./usr/share/games/hedgewars/Data/Sounds/voices/*",),
        (list_hedgewars,),
        "acted exclamations, 13 voice packs",
    ),
    Package(
        "asterisk-core-sounds-fr-g722",
        "CC-BY-SA-3.0",
        (AST,),
        (_asterisk_lister("fr", "g722", ".g722"),),
        "French IVR prompts (G.722), 1 female (fr_CA June)",
    ),
    Package(
        "asterisk-core-sounds-it-g722",
        "CC-BY-3.0",
        (AST,),
        (_asterisk_lister("it", "g722", ".g722"),),
        "Italian IVR prompts (G.722), 1 male (Carlo)",
    ),
    Package(
        "asterisk-core-sounds-ru-g722",
        "CC-BY-3.0",
        (AST,),
        (_asterisk_lister("ru", "g722", ".g722"),),
        "Russian IVR prompts (G.722), 1 female",
    ),
    Package(
        "tuxpaint-stamps-default",
        "GPL-2",
        ("./usr/share/tuxpaint/stamps/*_desc*",),
        (list_tuxpaint,),
        "stamp descriptions, ~12 languages, mostly one voice each",
    ),
    Package(
        "festvox-ru",
        "BSD-like (festvox)",
        ("./usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav/*",),
        (list_festvox_ru,),
        "620 read Russian sentences, 1 male, 16 kHz",
    ),
    Package(
        "ktuberling-data",
        "GPL-2+",
        ("./usr/share/ktuberling/sounds/*",),
        (list_ktuberling,),
        "single words, 21 languages",
    ),
    Package(
        "0ad-data",
        "CC-BY-SA-3.0",
        (f"./{ZERO_AD}",),
        (list_0ad_voices, list_0ad_ambient),
        "unit voices in ancient languages; rain, wind, thunder, birds, river, waves, farm, port, market",
        inner=ZERO_AD_ZIP,
    ),
    # Narrowband speech (8 kHz and telephone-band sources)
    Package(
        "asterisk-prompt-it-menardi-wav",
        "CC-BY-SA-3.0",
        (AST,),
        (_asterisk_lister("it", "soundfile", ".wav"),),
        "Italian IVR prompts, 1 female, 8 kHz",
    ),
    Package(
        "asterisk-prompt-fr-armelle",
        "BSD-like (Michel Gutierrez)",
        (AST,),
        (_asterisk_lister("fr", "gsm", ".gsm"),),
        "French IVR prompts, 1 female, GSM 8 kHz",
    ),
    Package(
        "asterisk-prompt-es-co",
        "GPL-2",
        (AST,),
        (_asterisk_lister("es", "gsm", ".gsm"),),
        "Colombian Spanish IVR prompts, GSM 8 kHz",
    ),
    Package(
        "warzone2100-data",
        "GPL-2+",
        (f"./{WARZONE_ZIP.path}",),
        (list_warzone,),
        "mission and unit voice lines (narrowband)",
        inner=WARZONE_ZIP,
        priority=2,
    ),
    # Noise
    Package(
        "megaglest-data",
        "CC-BY-SA-3.0",
        ("./usr/share/games/megaglest/tilesets/*/sounds/*",),
        (list_megaglest,),
        "day/night/rain/wind ambiences, animal calls",
        priority=0,
    ),
    Package(
        "supertuxkart-data",
        "GPL-3+",  # the copyright file's `Files: *`; each sound used is named by its own stanza
        ("./usr/share/games/supertuxkart/data/sfx/*",),
        (list_supertuxkart,),
        "restaurant babble, river, rain, static radio, engines, machines",
    ),
    Package(
        "widelands-data",
        "GPL-2+",
        ("./usr/share/games/widelands/data/sound/*", "./usr/share/games/widelands/data/world/critters/*"),
        (list_widelands,),
        "taverns, sawmill, smithy, farms, animals",
    ),
    Package(
        "lincity-ng-data",
        "GPL-2+",
        ("./usr/share/games/lincity-ng/sounds/*",),
        (list_lincity,),
        "traffic, crowds, school, industry",
    ),
    Package(
        "bucklespring-data",
        "GPL-2+",
        ("./usr/share/buckle/wav/*",),
        (list_bucklespring,),
        "keyboard key presses, stitched into typing",
    ),
    Package(
        "sonic-pi-samples",
        "MIT",  # `Files: *` of the copyright file, for the samples it does not name (most are CC0, named)
        ("./usr/share/sonic-pi/samples/*",),
        (list_sonic_pi,),
        "vinyl hiss, ambiences, music-like loops",
    ),
    Package(
        "openttd-opensfx",
        "CC-BY-SA-3.0",
        (f"./{OPENTTD_CAT}",),
        (list_openttd,),
        "73 clips: trains, planes, machines, crowds",
        priority=2,
    ),
)
