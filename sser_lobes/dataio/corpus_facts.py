"""Facts of the public emotional speech corpora, from their documentation.

Speakers and their gender, emotion codes, texts, and the clip counts of each
full release, for Berlin EmoDB, RAVDESS (speech, audio-only) and CREMA-D;
the class letters of MSP-Podcast.
Read by the preparation (``recipes/Custom/prepare_corpus.py``) and by the
synthetic corpora of the tests (:mod:`sser_lobes.synthetic.public_corpora`);
the tests check the preparations' counts against numbers typed into them,
not against this module.

Authors
 * sser authors 2026
"""

#: EmoDB speakers and gender (emodb documentation: 03 male, 31 years, ...).
EMODB_SPEAKERS = {
    "03": "M",
    "08": "F",
    "09": "F",
    "10": "M",
    "11": "M",
    "12": "M",
    "13": "F",
    "14": "F",
    "15": "M",
    "16": "F",
}
#: EmoDB emotion letters (German initials) in the documentation's order.
EMODB_EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
EMODB_TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe "
    "Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}

#: MSP-Podcast EmoClass letters (release documentation, Odyssey 2024 challenge).
MSP_PODCAST_CLASSES = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
    "X": "no agreement",
}
#: Primary-emotion names of ``Labels/labels_detailed.csv`` (one row per file
#: and annotator) -> class letters; any other name (``Other``,
#: ``Other-Curious``, ...) is an "other" vote, ``O``.
MSP_PODCAST_DETAILED_NAMES = {
    "Angry": "A",
    "Sad": "S",
    "Happy": "H",
    "Surprise": "U",
    "Fear": "F",
    "Disgust": "D",
    "Contempt": "C",
    "Neutral": "N",
}

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_INTENSITIES = {"01": "normal", "02": "strong"}
RAVDESS_STATEMENTS = {
    "01": "Kids are talking by the door",
    "02": "Dogs are sitting by the door",
}

CREMAD_EMOTIONS = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
#: Vote columns of ``processedResults/tabulatedVotes.csv`` (counts of each
#: response) -> the classes above (CREMA-D README, "Tabulated Votes
#: Columns"). Its rows come in three blocks by their first, unnamed column:
#: 1xxxxx voice only (the audio), 2xxxxx face only, 3xxxxx audio-visual.
CREMAD_VOTE_COLUMNS = {
    "A": "anger",
    "D": "disgust",
    "F": "fear",
    "H": "happy",
    "N": "neutral",
    "S": "sad",
}
#: The tabulatedVotes.csv block of the voice-only ratings.
CREMAD_VOICE_BLOCK = 1
#: The twelve sentences and their codes (CREMA-D README).
CREMAD_SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
#: Emotion levels: low, medium, high, unspecified; ``X`` is how clip
#: 1040_ITH_SAD_XX was named until October 2022 (CREMA-D issue #6).
CREMAD_LEVELS = ("LO", "MD", "HI", "XX", "X")


def _release(total, emotion, speaker, gender):
    return {"total": total, "emotion": emotion, "speaker": speaker, "gender": gender}


#: Clips of each full release, by emotion, speaker and gender.
FULL_RELEASE = {
    "emodb": _release(
        535,
        {
            "anger": 127,
            "boredom": 81,
            "disgust": 46,
            "fear": 69,
            "happiness": 71,
            "sadness": 62,
            "neutral": 79,
        },
        {
            "03": 49,
            "08": 58,
            "09": 43,
            "10": 38,
            "11": 55,
            "12": 35,
            "13": 61,
            "14": 69,
            "15": 56,
            "16": 71,
        },
        {"F": 302, "M": 233},
    ),
    "ravdess": _release(
        1440,
        {e: 96 if e == "neutral" else 192 for e in RAVDESS_EMOTIONS.values()},
        {f"{k:02d}": 60 for k in range(1, 25)},
        {"F": 720, "M": 720},
    ),
    "cremad": _release(
        7442,
        {e: 1087 if e == "neutral" else 1271 for e in CREMAD_EMOTIONS.values()},
        {
            str(k): {1002: 81, 1008: 76, 1009: 76, 1019: 76, 1076: 81}.get(k, 82)
            for k in range(1001, 1092)
        },
        {"F": 3512, "M": 3930},
    ),
}
