"""Vocabulary as data: class sets, CIFAR-10 synonyms and attributes, digit properties, and the
grammar words every class set shares. Documented in docs/prompts.md (a test keeps the two in step).
"""

from __future__ import annotations

from typing import TypedDict


#: Class names of the digit datasets (sklearn digits and mnist1d): the digits themselves.
DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

#: CIFAR-10 class names in label order (label 0 is airplane).
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

#: Other words for each CIFAR-10 class. Plurals are added automatically ("cars", "lorries").
#: Only words that name the CIFAR class itself belong here; pickups are deliberately absent
#: because CIFAR-10 puts them in neither automobile nor truck.
CIFAR10_SYNONYMS: dict[str, tuple[str, ...]] = {
    "airplane": ("airplane", "aeroplane", "plane", "airliner", "jet", "aircraft", "jetliner",
                 "jumbo jet", "warplane", "fighter jet", "biplane", "seaplane"),
    "automobile": ("automobile", "car", "auto", "motorcar", "motor car", "sedan", "suv", "taxi",
                   "cab", "hatchback", "coupe", "convertible", "sports car", "limousine"),
    "bird": ("bird", "songbird", "sparrow", "ostrich", "emu", "parrot", "pigeon", "eagle", "hawk",
             "owl", "duck"),
    "cat": ("cat", "kitten", "kitty", "house cat", "feline", "tabby", "tomcat"),
    "deer": ("deer", "stag", "doe", "fawn", "reindeer"),
    "dog": ("dog", "puppy", "pup", "hound", "canine", "doggy", "doggie", "doggo", "pooch", "mutt"),
    "frog": ("frog", "toad", "bullfrog", "tree frog"),
    "horse": ("horse", "pony", "stallion", "mare", "foal", "steed", "colt", "filly", "equine"),
    "ship": ("ship", "boat", "vessel", "ferry", "watercraft", "yacht", "sailboat", "freighter",
             "cargo ship", "container ship", "cruise ship", "ocean liner", "steamship",
             "battleship", "warship"),
    "truck": ("truck", "lorry", "dump truck", "fire truck", "fire engine", "semi truck",
              "big rig", "tractor trailer"),
}


class AttributeEntry(TypedDict):
    """One row of :data:`CIFAR10_ATTRIBUTES`.

    ``classes``: the CIFAR-10 classes that have the attribute. ``nouns``: words that get an
    automatic plural ("mammal" -> "mammals"). ``words``: adjectives, verbs and fixed phrases,
    matched exactly as written. ``note``: why the membership is what it is, for the docs.
    """

    classes: tuple[str, ...]
    nouns: tuple[str, ...]
    words: tuple[str, ...]
    note: str


#: The attribute table for CIFAR-10 prompts. Membership follows the paper's and the project
#: README's expected answers where those are sensible; where the README disagrees with biology
#: (birds with fur), biology wins and the docs say so. Connecting words ("that", "can", "with",
#: "in", "on", "operate", "live", ...) are grammar, not attributes, so "lives in water",
#: "on water" and "aquatic" all reach the ``water`` row.
CIFAR10_ATTRIBUTES: dict[str, AttributeEntry] = {
    "animal": {
        "classes": ("bird", "cat", "deer", "dog", "frog", "horse"),
        "nouns": ("animal", "creature", "beast", "critter", "organism", "living thing",
                  "living being", "living creature"),
        "words": ("living", "alive", "animate"),
        "note": "the six animal classes (paper: 'select all living things')",
    },
    "vehicle": {
        "classes": ("airplane", "automobile", "ship", "truck"),
        "nouns": ("vehicle", "transportation method", "transport method", "conveyance",
                  "engine", "motor"),
        "words": ("transport", "transportation", "means of transport", "means of transportation",
                  "mode of transport", "modes of transport", "motorized", "motorised",
                  "carry cargo", "carry goods", "carry passengers", "carry people"),
        "note": "the four vehicle classes (README: 'objects that can carry cargo')",
    },
    "man_made": {
        "classes": ("airplane", "automobile", "ship", "truck"),
        "nouns": ("machine", "artifact", "artefact"),
        "words": ("man made", "human made", "artificial", "manufactured", "mechanical"),
        "note": "made by people; in CIFAR-10 these are exactly the vehicles",
    },
    "flies": {
        "classes": ("airplane", "bird"),
        "nouns": ("flyer", "flier"),
        "words": ("fly", "flies", "flying", "airborne", "air", "sky"),
        "note": "can fly; 'in the air' and 'in the sky' read as this too",
    },
    "wings": {
        "classes": ("airplane", "bird"),
        "nouns": ("wing",),
        "words": ("winged", "bird like"),
        "note": "has wings, looks or moves like a bird",
    },
    "feathers": {
        "classes": ("bird",),
        "nouns": ("feather", "beak"),
        "words": ("feathered", "feathery", "beaked"),
        "note": "only birds have feathers",
    },
    "fur": {
        "classes": ("cat", "deer", "dog", "horse"),
        "nouns": (),
        "words": ("fur", "furry", "hairy", "hair", "fluffy"),
        "note": "has fur: the mammals (the README's answer also lists bird; birds have feathers)",
    },
    "four_legs": {
        "classes": ("cat", "deer", "dog", "horse"),
        "nouns": ("quadruped",),
        "words": ("four legs", "4 legs", "four legged", "4 legged"),
        "note": "walks on four legs, as in the README; frogs hop and are left out",
    },
    "mammal": {
        "classes": ("cat", "deer", "dog", "horse"),
        "nouns": ("mammal",),
        "words": ("mammalian",),
        "note": "the paper's 'classify all mammals'",
    },
    "hooves": {
        "classes": ("deer", "horse"),
        "nouns": ("hoof", "ungulate"),
        "words": ("hoofed", "hooved"),
        "note": "hoofed animals",
    },
    "pet": {
        "classes": ("cat", "dog"),
        "nouns": ("pet", "companion animal", "house pet"),
        "words": (),
        "note": "kept as a pet, as in the paper's 'animals that can be regarded as pets'",
    },
    "domestic": {
        "classes": ("cat", "dog", "horse"),
        "nouns": (),
        "words": ("domestic", "domesticated", "tame", "tamed"),
        "note": "domesticated animals: pets plus horses",
    },
    "wild": {
        "classes": ("bird", "deer", "frog"),
        "nouns": (),
        "words": ("wild", "untamed", "wildlife"),
        "note": "animals that are not domesticated",
    },
    "warm_blooded": {
        "classes": ("bird", "cat", "deer", "dog", "horse"),
        "nouns": (),
        "words": ("warm blooded", "endothermic"),
        "note": "birds and mammals",
    },
    "cold_blooded": {
        "classes": ("frog",),
        "nouns": ("amphibian",),
        "words": ("cold blooded", "ectothermic", "amphibious"),
        "note": "the README's 'identify all cold-blooded animals'",
    },
    "lays_eggs": {
        "classes": ("bird", "frog"),
        "nouns": (),
        "words": ("lay eggs", "lays eggs", "egg laying", "oviparous"),
        "note": "birds and frogs lay eggs",
    },
    "water": {
        "classes": ("frog", "ship"),
        "nouns": (),
        "words": ("water", "aquatic", "sea", "ocean", "river", "lake"),
        "note": "lives in water or travels on it ('travel on water' is ship among vehicles)",
    },
    "wheels": {
        "classes": ("airplane", "automobile", "truck"),
        "nouns": ("wheel",),
        "words": ("wheeled",),
        "note": "has wheels, landing gear included (README: 'things with wheels')",
    },
    "road": {
        "classes": ("automobile", "truck"),
        "nouns": ("road", "street", "highway", "land vehicle", "road vehicle"),
        "words": (),
        "note": "land vehicles that use roads (paper: 'vehicles that operate on roads')",
    },
    "land": {
        "classes": ("automobile", "cat", "deer", "dog", "horse", "truck"),
        "nouns": (),
        "words": ("land", "terrestrial", "ground"),
        "note": "moves mainly on land; birds fly and frogs are amphibious",
    },
    "floats": {
        "classes": ("ship",),
        "nouns": ("sailor",),
        "words": ("float", "floats", "floating", "afloat", "sail", "sails", "sailing",
                  "seafaring", "seagoing", "nautical"),
        "note": "floats or sails: ships (frogs swim, they do not float)",
    },
    "barks": {
        "classes": ("dog",),
        "nouns": (),
        "words": ("bark", "barks", "barking", "woof", "wags its tail"),
        "note": "sounds and habits that name one class",
    },
    "meows": {
        "classes": ("cat",),
        "nouns": ("whisker",),
        "words": ("meow", "meows", "meowing", "miaow", "purr", "purrs", "purring"),
        "note": "sounds and habits that name one class",
    },
    "neighs": {
        "classes": ("horse",),
        "nouns": ("mane",),
        "words": ("neigh", "neighs", "neighing", "gallop", "gallops", "galloping"),
        "note": "sounds and habits that name one class",
    },
    "hops": {
        "classes": ("frog",),
        "nouns": ("tadpole",),
        "words": ("hop", "hops", "hopping", "croak", "croaks", "croaking", "ribbit"),
        "note": "sounds and habits that name one class",
    },
    "antlers": {
        "classes": ("deer",),
        "nouns": ("antler",),
        "words": ("antlered",),
        "note": "only deer carry antlers",
    },
    "chirps": {
        "classes": ("bird",),
        "nouns": ("nest",),
        "words": ("chirp", "chirps", "chirping", "tweet", "tweets", "tweeting", "avian"),
        "note": "sounds and habits that name one class",
    },
}


class DigitProperty(TypedDict):
    """One row of :data:`DIGIT_PROPERTIES`: the digits that have it and the words for it."""

    digits: tuple[int, ...]
    words: tuple[str, ...]


#: Named digit properties. Comparisons, ranges, multiples and divisors are grammar (they take a
#: number) and are not listed here. 0 counts as even and as a square; 0 and 1 are neither prime
#: nor composite.
DIGIT_PROPERTIES: dict[str, DigitProperty] = {
    "even": {"digits": (0, 2, 4, 6, 8), "words": ("even", "evens")},
    "odd": {"digits": (1, 3, 5, 7, 9), "words": ("odd", "odds")},
    "prime": {"digits": (2, 3, 5, 7), "words": ("prime", "primes")},
    "composite": {"digits": (4, 6, 8, 9), "words": ("composite", "composites")},
    "square": {"digits": (0, 1, 4, 9), "words": ("square", "squares", "perfect square",
                                                 "perfect squares")},
    "nonzero": {"digits": (1, 2, 3, 4, 5, 6, 7, 8, 9), "words": ("nonzero",)},
    "small": {"digits": (0, 1, 2, 3, 4), "words": ("small", "little", "low", "lower half",
                                                   "bottom half")},
    "large": {"digits": (5, 6, 7, 8, 9), "words": ("large", "big", "high", "upper half",
                                                   "top half")},
}

#: Plurals people write for the digits themselves ("sevens", "zeroes"); "ones" is read by context
#: (see ``lexicon._resolve_ones``) because "the even ones" means "the even digits".
_NUMBER_PLURALS = (("zeros", "zeroes"), ("ones",), ("twos",), ("threes",), ("fours",),
                   ("fives",), ("sixes",), ("sevens",), ("eights",), ("nines",))

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "ten")

# Dataset names accepted for ``classes``, compared after dropping case, '-', '_' and spaces so
# the spellings the data loaders accept ("mnist-1d", "cifar_10") work here too.
_CLASS_SETS: dict[str, tuple[str, ...]] = {
    "digits": DIGIT_CLASSES,
    "sklearndigits": DIGIT_CLASSES,
    "mnist": DIGIT_CLASSES,
    "mnist1d": DIGIT_CLASSES,
    "cifar10": CIFAR10_CLASSES,
}

# --------------------------------------------------------------------------------------------
# Grammar words shared by every class set. Each entry is "phrase|phrase|..." -> token kind.
# Phrases are matched longest-first, so "greater than or equal to" wins over "or".
# --------------------------------------------------------------------------------------------

# Words that carry no meaning for the task: request verbs, articles, and nouns that only say
# "the classes" ("things", "images"). Dropped wherever they appear.
_FILLER = (
    "give me|give us|me|us|please|i|we|you|want|want to|need|need to|would|like|like to|make|"
    "build|create|train|generate|get|return|model|models|classifier|classifiers|network|"
    "networks|net|model to|classifier to|network to|model for|classifier for|network for|"
    "select|selects|selecting|classify|classifies|find|finds|recognize|recognizes|recognise|"
    "recognises|detect|detects|identify|identifies|pick|picks|choose|chooses|keep|keeps|mark|"
    "marks|label|labels|spot|spots|look for|tell|"
    "all|every|any|each|only|just|everything|anything|the|a|an|of|either|also|really|"
    "naturally|commonly|usually|typically|normally|generally|"
    "positive|positives|positive class|class|classes|category|categories|kind|kinds|type|types|"
    "sort|sorts|image|images|picture|pictures|photo|photos|photograph|photographs|example|"
    "examples|sample|samples|input|inputs|thing|things|object|objects|item|items|ones"
)

# Intent words: how people ask for a one-vs-rest model ("I need a detector for sevens", "flag
# every odd number", "a model that says yes for 4 and 9"). Request words too, so dropped.
_INTENT = (
    "detector|detectors|detection|detecting|detected|flag|flags|flagged|flagging|catch|catches|"
    "catching|caught|spotting|spotted|spotter|pick out|picks out|picking out|single out|"
    "singles out|filter|filters|filter out|filters out|separate|separates|separating|"
    "distinguish|distinguishes|distinguishing|tell apart|identifier|identification|"
    "identifying|recognizer|recogniser|recognition|recognizing|recognising|classifying|"
    "finding|selecting|choosing|looking for|look out for|searching for|search for|for|"
    "says yes for|say yes for|says yes to|say yes to|saying yes for|saying yes to|"
    "answers yes for|answer yes for|yes for|yes to|yes on|fires on|fire on|fires for|fire for|"
    "triggers on|trigger on|triggers for|lights up for|returns true for|true for|"
    "handwritten|hand written|written|drawn|showing|shows|show|containing|contain|contains|"
    "depicting|depicts|in images|in pictures|in photos|in the images|in the pictures|"
    "people|humans|someone|folks|"
    "depicting|depicts|am|would like|would love|let|help|see|sees|can see|binary|binary task|"
    "task|detect whether|whether|if|is it|there is|there are"
)

# "The rest" / "everything else" as the negative side of a one-vs-rest task ("sevens vs the
# rest", "cats, the rest negative", "yes for 2 and 5, no for everything else"). These phrases say
# nothing beyond what a task already means, so they are dropped; written alone, "the rest" is an
# error (it names no class).
_REST = ("the rest|rest|all the rest|the rest of them|the rest of the classes|"
         "the rest of the digits|everything else|all else|anything else|the others|others|"
         "all others|all the others|all other classes|the other classes|other classes|"
         "every other class|all other digits|the other digits|other digits|every other digit|"
         "the other ones|other ones|the remaining classes|the remaining digits|the remaining ones|"
         "the remainder|everyone else")
_VERSUS = "vs|versus|v|against|compared to|compared with|rather than|from|apart from|not"
_NEGATIVE = ("negative|negatives|is negative|are negative|as negative|as negatives|"
             "should be negative|being negative|no|is no|are no|false|is false|are false|"
             "set to 0|is 0|are 0|0")
_NO_FOR = ("no for|no to|not for|negative for|false for|0 for|and no|and not|but not|and nothing|"
           "nothing")


def _rest_phrases() -> str:
    """Every "X vs the rest" style phrase, as one "|"-separated spec (see ``_REST``)."""
    rest = _REST.split("|")
    out = [f"{v} {r}" for v in _VERSUS.split("|") for r in rest]
    out += [f"{r} {n}" for r in rest for n in _NEGATIVE.split("|")]
    out += [f"{n} {r}" for n in _NO_FOR.split("|") for r in rest]
    out += [f"{c} {r} {n}" for c in ("and", "but", "with") for r in rest
            for n in _NEGATIVE.split("|")]
    out += ["vs all", "versus all", "against all", "nothing else", "and nothing else",
            "but nothing else", "nothing more",
            "one vs rest", "one vs all", "one versus rest", "one versus all", "one against rest",
            "one against all", "one vs the rest", "one versus the rest", "one against the rest",
            "one vs others", "one vs the others", "one vs everything else", "ovr", "ova",
            "one vs rest for", "one vs all for"]
    return "|".join(out)


_REST_PHRASES = _rest_phrases()

# Words that introduce a condition on what came before ("animals THAT CAN fly", "vehicles THAT
# OPERATE ON roads", "digits WHICH ARE odd"). The condition always intersects.
_RELATIVE = (
    "that|which|who|whose|where|are|is|be|being|been|was|were|can|could|may|might|will|do|"
    "does|have|has|having|had|with|in|on|at|inside|through|from|able to|capable of|used for|"
    "used as|as|regarded as|considered|considered as|considered to be|seen as|counted as|"
    "known as|classed as|kept as|operate|operates|operating|travel|travels|travelling|"
    "traveling|live|lives|move|moves|moving|run|runs|drive|drives|go|goes|found"
)

_LOGIC: dict[str, str] = {
    "and|&|and also": "and",
    "or|/|and/or": "or",
    "plus|+|as well as|along with|together with|in addition to": "union",
    "not|no|non|without|lacking|none of": "not",
    "except|except for|excluding|exclude|other than|apart from|aside from|besides|save for|"
    "minus": "except",
    "but": "but",
    "both": "both",
    "neither": "neither",
    "nor": "nor",
    "(": "lparen",
    ")": "rparen",
    ",|;": "comma",
}

# Digit-only grammar: comparisons (value = (operator, usable after a number as "5 or more")),
# ranges, multiples and divisors. "no more than 4" needs no entry: it is "not" + "more than".
_DIGIT_GRAMMAR: dict[str, tuple[str, object]] = {
    "greater than|bigger than|larger than|more than|higher than|>|exceeding|beyond":
        ("cmp", (">", False)),
    "greater|bigger|larger|more|higher|above|over|up": ("cmp", (">", True)),
    "less than|smaller than|lower than|fewer than|<": ("cmp", ("<", False)),
    "less|smaller|lower|fewer|below|under|down": ("cmp", ("<", True)),
    "at least|>=|=>|≥|greater than or equal to|bigger than or equal to|"
    "larger than or equal to|more than or equal to|higher than or equal to|"
    "greater or equal to|greater than or equal": ("cmp", (">=", False)),
    "at most|<=|=<|≤|up to|less than or equal to|smaller than or equal to|"
    "lower than or equal to|fewer than or equal to|less or equal to|less than or equal":
        ("cmp", ("<=", False)),
    "between": ("between", None),
    "from": ("from", None),
    "to|through|thru|till|until": ("to", None),
    # Written after a number: "6 upwards", "from 6 onwards", "3 downwards".
    "upwards|upward|onwards|onward|and upwards|and onwards|or upwards": ("post", ">="),
    "downwards|downward|and downwards|or downwards": ("post", "<="),
    "multiple of|multiples of|divisible by|evenly divisible by": ("mult", None),
    "divisor of|divisors of|factor of|factors of": ("divisor", None),
    "digit|digits|number|numbers|numeral|numerals|integer|integers|value|values|range":
        ("skip", None),
}

_EXAMPLES_DIGITS = ("odd digits", "even and greater than 4", "0, 3 and 7", "all except 5",
                    "multiples of 3")
_EXAMPLES_CIFAR = ("all animals", "vehicles that operate on roads", "things that can fly",
                   "cats or dogs", "animals with fur but not pets")
