"""eSpeak NG through `espeakng-loader`: a CPU voice with no download (the wheel ships the
library and its data). The library keeps global state, so calls are serialised."""

from __future__ import annotations

import ctypes
import threading
from functools import lru_cache

import numpy as np

from storyworld.voices import VoiceSpec

__all__ = ["EspeakUnavailable", "espeak_available", "synthesize_espeak"]

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE, _VOLUME, _PITCH = 1, 2, 3
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_lock = threading.Lock()


class EspeakUnavailable(RuntimeError):
    """espeakng-loader is not installed or its library does not load."""


class _Espeak:
    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise EspeakUnavailable(
                "the CPU voice needs espeakng-loader (pip install espeakng-loader)"
            ) from None
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as e:
            raise EspeakUnavailable(f"cannot load eSpeak NG: {e}") from None
        data = espeakng_loader.get_data_path().encode()
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 500, data, _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EspeakUnavailable(f"eSpeak NG failed to start (data at {data.decode()})")
        self.sample_rate = rate
        self.chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive with the object
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]

    def _collect(self, wav, n, events):  # type: ignore[no-untyped-def]
        if n > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def speak(self, text: str, voice: VoiceSpec) -> np.ndarray:
        lang, _, variant = voice.name.partition("+")
        tail = f"+{variant}" if variant else ""
        # "en-gb" is "en" to eSpeak NG; fall back to the language's base name.
        names = [voice.name, f"{lang.split('-')[0]}{tail}"]
        if not any(self.lib.espeak_SetVoiceByName(n.encode()) == 0 for n in names):
            raise ValueError(f"eSpeak NG has no voice {voice.name!r}")
        self.lib.espeak_SetParameter(_RATE, int(voice.rate), 0)
        self.lib.espeak_SetParameter(_PITCH, int(voice.pitch), 0)
        self.lib.espeak_SetParameter(_VOLUME, 100, 0)
        self.chunks = []
        raw = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(raw)
        err = self.lib.espeak_Synth(buf, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"eSpeak NG could not speak (error {err})")
        self.lib.espeak_Synchronize()
        if not self.chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self.chunks).astype(np.float32) / 32768.0


@lru_cache(maxsize=1)
def _engine() -> _Espeak:
    return _Espeak()


def espeak_available() -> str | None:
    """None when the CPU voice works here, else why not."""
    try:
        _engine()
    except EspeakUnavailable as e:
        return str(e)
    return None


def synthesize_espeak(text: str, voice: VoiceSpec) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and their sample rate."""
    with _lock:
        engine = _engine()
        return engine.speak(text, voice), engine.sample_rate
