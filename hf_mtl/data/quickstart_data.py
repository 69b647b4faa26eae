"""Generates the small quickstart data set shipped in `hf_mtl/data/quickstart/` (all text written for
this project from hand-made templates; nothing is copied from other data sets).

Three tasks, each in a different file format so the quickstart recipe exercises the loaders:
- sentiment (positive/negative short reviews): TSV with a header `text<TAB>label`;
- topic (World, Sports, Business, Sci/Tech headlines): CSV without a header, `class_index,text` with
  class index 1..4 (mapped to names by the recipe's `label_map`, like AG News);
- ner (PER/ORG/LOC/MISC, IOB2): CoNLL `token tag` lines, starting with a `-DOCSTART-` line.

The output is deterministic (seeded); `python -m hf_mtl.data.quickstart_data [DIR]` rewrites it and a
test checks the shipped files match.
"""

from __future__ import annotations

import csv
import io
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

SEED = 20240611
SIZES = {"train": 320, "validation": 64}
QUICKSTART_DIR = Path(__file__).resolve().parent / "quickstart"
TOPIC_LABELS = ("World", "Sports", "Business", "Sci/Tech")

# ---------------------------------------------------------------------------- sentiment
_DOMAINS = {
    "movie": {
        "things": ["the movie", "this film", "the sequel", "the documentary", "the new thriller", "this comedy",
                   "the animated feature", "the remake", "the period drama", "the series finale"],
        "aspects": ["the acting", "the soundtrack", "the plot", "the dialogue", "the ending", "the pacing",
                    "the camera work", "the lead performance", "the special effects", "the script"],
        "verb": "watching",
    },
    "food": {
        "things": ["the restaurant", "this little cafe", "the new bistro downtown", "the pizza place on the corner",
                   "the sushi bar", "the food truck", "the bakery", "this noodle shop"],
        "aspects": ["the service", "the pasta", "the dessert", "the staff", "the portions", "the coffee",
                    "the bread", "the curry", "the wine list"],
        "verb": "eating at",
    },
    "product": {
        "things": ["this phone", "the blender", "these headphones", "the laptop", "this vacuum cleaner",
                   "the coffee maker", "my new backpack", "the desk lamp", "these running shoes", "the tablet"],
        "aspects": ["the battery life", "the build quality", "the sound", "the price", "the setup", "the screen",
                    "the design", "the customer support", "the manual"],
        "verb": "buying",
    },
    "book": {
        "things": ["the novel", "this cookbook", "the memoir", "the second book in the series", "the short story collection",
                   "the biography", "this travel guide"],
        "aspects": ["the characters", "the writing", "the last chapter", "the recipes", "the translation",
                    "the illustrations", "the humour"],
        "verb": "reading",
    },
    "hotel": {
        "things": ["the hotel", "our room", "the resort", "the guesthouse", "the holiday cottage", "the hostel"],
        "aspects": ["the breakfast", "the staff", "the view", "the bed", "the location", "the pool", "the shower"],
        "verb": "staying at",
    },
}
_POSITIVE = ["wonderful", "delightful", "excellent", "charming", "superb", "brilliant", "fantastic", "lovely",
             "impressive", "great", "outstanding", "warm", "memorable", "a real treat"]
_NEGATIVE = ["dull", "disappointing", "awful", "terrible", "bland", "poor", "mediocre", "frustrating", "boring",
             "overpriced", "unpleasant", "a letdown", "forgettable", "a mess"]
_INTENSIFIERS = ["", "really ", "truly ", "absolutely ", "surprisingly ", "pretty ", "incredibly ", "so "]

_POSITIVE_TEMPLATES = [
    "{Thing} was {intens}{pos}.",
    "I loved {thing}; {aspect} was {pos}.",
    "{Aspect} alone made {thing} worth it.",
    "Absolutely {pos}! I would recommend {thing} to anyone.",
    "{Thing} went beyond my expectations, especially {aspect}.",
    "Five stars: {aspect} was {pos} and {aspect2} was even better.",
    "{Thing} is {pos}, and {aspect} is {pos2}.",
    "I can't stop telling my friends about {thing}.",
    "Despite a slow start, {thing} turned out {intens}{pos}.",
    "We had a {pos_adj} time; {aspect} was spot on.",
    "Best decision this month was {verb} {thing}.",
    "{Aspect} was {intens}{pos}, I will be back for more.",
    "Such a pleasant surprise, {thing} really delivers.",
    "Nothing fancy, but {thing} is honest and {pos}.",
]
_NEGATIVE_TEMPLATES = [
    "{Thing} was {intens}{neg}.",
    "I regret {verb} {thing}.",
    "{Aspect} was {neg} and {aspect2} was no better.",
    "Save your money; {thing} is {neg}.",
    "{Thing} never lived up to the hype.",
    "Not worth it: {aspect} was {intens}{neg}.",
    "I wanted to like {thing}, but {aspect} was {neg}.",
    "Despite {pos_adj} {aspect}, {thing} was {neg} overall.",
    "One star, {aspect} ruined everything.",
    "{Thing} left me bored and annoyed.",
    "Never again: {aspect} was {neg} and nobody seemed to care.",
    "{Aspect} was {intens}{neg}, what a waste.",
    "I expected much more from {thing}.",
    "Sadly {thing} is {neg}, and {aspect} is {neg2}.",
]
# adjectives that read well directly before a noun ("a lovely time", "despite great acting")
_POS_ATTRIBUTIVE = ["wonderful", "delightful", "excellent", "lovely", "great", "fantastic", "brilliant"]


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentiment_example(rng: random.Random) -> tuple[str, str]:
    domain = _DOMAINS[rng.choice(sorted(_DOMAINS))]
    label = rng.choice(["positive", "negative"])
    template = rng.choice(_POSITIVE_TEMPLATES if label == "positive" else _NEGATIVE_TEMPLATES)
    aspect, aspect2 = rng.sample(domain["aspects"], 2)
    pos, pos2 = rng.sample(_POSITIVE, 2)
    neg, neg2 = rng.sample(_NEGATIVE, 2)
    thing = rng.choice(domain["things"])
    slots = {
        "thing": thing, "Thing": _capitalize(thing), "aspect": aspect, "Aspect": _capitalize(aspect),
        "aspect2": aspect2, "pos": pos, "pos2": pos2, "neg": neg, "neg2": neg2, "verb": domain["verb"],
        "intens": rng.choice(_INTENSIFIERS) if not pos.startswith("a ") and not neg.startswith("a ") else "",
        "pos_adj": rng.choice(_POS_ATTRIBUTIVE),
    }
    return template.format(**slots), label


# ---------------------------------------------------------------------------- topic
_COUNTRIES = ["Brazil", "Kenya", "Japan", "Canada", "Norway", "India", "Mexico", "Egypt", "Poland", "Vietnam",
              "Chile", "Ghana", "Portugal", "Indonesia", "Morocco", "New Zealand"]
_CITIES = ["Geneva", "Nairobi", "Lima", "Seoul", "Vienna", "Jakarta", "Lagos", "Istanbul", "Manila", "Bogota",
           "Oslo", "Hanoi", "Accra", "Lisbon"]
_REGIONS = ["the north of the country", "coastal provinces", "the southern highlands", "the river delta",
            "several mountain villages", "the capital region"]
_ISSUES = ["refugee aid", "water sharing", "a new trade pact", "climate funding", "prisoner exchanges",
           "fishing rights", "election reform"]
_TEAMS = ["Riverside Rovers", "Eastport United", "Kingsbridge City", "the Harbour Hawks", "Northgate Athletic",
          "the Valley Falcons", "Westmoor Wanderers", "the Capital Comets"]
_PLAYERS = ["Lucas Ferreira", "Amina Diallo", "Tomasz Nowak", "Hana Sato", "Diego Alvarez", "Grace Mensah",
            "Erik Lindqvist", "Priya Raman", "Mateo Silva", "Chloe Martin"]
_TOURNAMENTS = ["Open", "national championship", "continental cup", "regional final", "indoor series", "marathon"]
_COMPANIES = ["Northwind Foods", "Brightline Motors", "Harbor Bank", "Vantage Airlines", "Granite Steel",
              "Meridian Retail", "Bluewater Energy", "Summit Insurance"]
_TECH = ["Quantix", "Lumina Labs", "Byteforge", "Nimbus Systems", "Orbitel", "Pixelwave"]
_PLANETS = ["Mars", "Jupiter's moon Europa", "Venus", "a nearby comet", "Saturn's rings"]
_ANIMALS = ["crows", "octopuses", "sea otters", "young chimpanzees", "honeybees"]

_TOPIC_TEMPLATES: dict[str, list[str]] = {
    "World": [
        "{country} and {country2} sign a new border agreement",
        "Protesters gather in {city} as parliament debates {issue}",
        "{country}'s prime minister calls an early election",
        "Floods force thousands from their homes in {region}",
        "UN envoy arrives in {city} for ceasefire talks",
        "Foreign ministers meet in {city} to discuss {issue}",
        "Earthquake shakes {region}, no casualties reported",
        "{country} recalls its ambassador after a diplomatic row",
        "Voters in {country} head to the polls on Sunday",
        "Aid convoy reaches {region} after weeks of delay",
        "Leaders of {country} and {country2} hold talks on {issue}",
    ],
    "Sports": [
        "{team} beat {team2} {score} to reach the final",
        "{player} scores twice as {team} win in {city}",
        "Coach of {team} resigns after a long losing streak",
        "{player} withdraws from the {tournament} with a knee injury",
        "{team} sign a young striker from {team2}",
        "Record crowd watches {team} clinch the league title",
        "{player} sets a new national record in the 400 metres",
        "Rain delays the final day of the {tournament}",
        "{player} wins the {tournament} in straight sets",
        "{team} hold {team2} to a goalless draw",
        "Injury-hit {team} slump to a third straight defeat",
    ],
    "Business": [
        "{company} shares jump after strong quarterly profit",
        "{company} to cut {n} jobs as sales slow",
        "Oil prices rise as {country} reduces output",
        "Central bank holds interest rates steady",
        "{company} agrees to buy {company2} for {n} million dollars",
        "Retail sales fall for a third straight month",
        "{company} chief executive steps down after a weak year",
        "Investors worry about inflation as bond yields climb",
        "{company} opens its first factory in {country}",
        "Stocks close higher as {company} beats forecasts",
        "{company} raises prices, blaming higher fuel costs",
    ],
    "Sci/Tech": [
        "{tech} unveils a faster chip for laptops",
        "Scientists discover a new species of frog in {country}",
        "Space agency launches a probe to study {planet}",
        "{tech} fixes a security flaw in its web browser",
        "Researchers teach a robot to sort recycling",
        "New battery design could double electric car range",
        "{tech} releases an update to its phone software",
        "Astronomers spot water vapour around {planet}",
        "Study finds that {animal} can solve simple puzzles",
        "{tech} tests delivery drones in {city}",
        "Hackers target {tech} users with fake login pages",
    ],
}


def _topic_example(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(TOPIC_LABELS)
    country, country2 = rng.sample(_COUNTRIES, 2)
    team, team2 = rng.sample(_TEAMS, 2)
    company, company2 = rng.sample(_COMPANIES, 2)
    slots = {
        "country": country, "country2": country2, "city": rng.choice(_CITIES), "region": rng.choice(_REGIONS),
        "issue": rng.choice(_ISSUES), "team": team, "team2": team2, "player": rng.choice(_PLAYERS),
        "tournament": rng.choice(_TOURNAMENTS), "score": f"{rng.randint(1, 4)}-{rng.randint(0, 1)}",
        "company": company, "company2": company2, "n": rng.choice([120, 300, 450, 800, 1200, 2500]),
        "tech": rng.choice(_TECH), "planet": rng.choice(_PLANETS), "animal": rng.choice(_ANIMALS),
    }
    text = rng.choice(_TOPIC_TEMPLATES[label]).format(**slots)
    return _capitalize(text), label


# ---------------------------------------------------------------------------- NER
_NER_PEOPLE = ["Maria Lopez", "Kenji Watanabe", "Amara Okafor", "Liam Byrne", "Sofia Rossi", "Ahmed Hassan",
               "Ingrid Larsen", "Chen Wei", "Priya Nair", "Jonas Becker", "Fatima Zahra", "David Cohen", "Olga Petrova",
               "Samuel Mensah", "Lucia Fernandez", "Tariq Aziz", "Emma Clarke", "Rahul Mehta", "Nguyen Thi Lan",
               "Carlos", "Anita", "Hoffmann", "Okoye"]
_NER_ORGS = ["Harbor Bank", "Northwind Foods", "Quantix", "Lumina Labs", "United Nations", "Red Cross",
             "Eastport United", "Ministry of Health", "Brightline Motors", "World Health Organization",
             "Kingsbridge City", "Vantage Airlines", "Central Bank", "Greenfield University"]
_NER_PLACES = ["Paris", "Nairobi", "Buenos Aires", "Oslo", "Kyoto", "Cape Town", "Texas", "New Delhi", "Canada",
               "Lisbon", "Cairo", "Melbourne", "Bavaria", "Lake Victoria", "Sao Paulo", "Vietnam", "Chicago"]
_NER_NATIONALITIES = ["German", "Brazilian", "Japanese", "Canadian", "Italian", "Kenyan", "Mexican", "Swedish",
                      "Indian", "French"]
_NER_EVENTS = ["World Cup", "Olympic Games", "Nobel Prize", "Golden Quill Award", "Spring Festival",
               "Champions League", "Climate Summit"]
_NER_LANGUAGES = ["Spanish", "Arabic", "Portuguese", "Korean", "English"]
_NER_TEMPLATES = [
    "{PER} , the chief executive of {ORG} , visited {LOC} on Tuesday .",
    "{PER} will join {ORG} next season .",
    "{ORG} opened a new office in {LOC} this week .",
    "{PER} and {PER} met in {LOC} to discuss the {NAT} trade deal .",
    "According to {ORG} , prices in {LOC} rose sharply last month .",
    "{PER} won the {EVENT} for her first novel .",
    "A {NAT} court ruled against {ORG} on Friday .",
    "{PER} told reporters in {LOC} that the talks had failed .",
    "The {EVENT} will be held in {LOC} next year .",
    "{ORG} said it would hire 200 engineers in {LOC} .",
    "{PER} scored the winning goal for {ORG} .",
    "Tourists from {LOC} crowded the beaches of {LOC} .",
    "{PER} speaks fluent {LANG} and {LANG} .",
    "The {NAT} team arrived in {LOC} for the {EVENT} .",
    "Shares of {ORG} fell after {PER} resigned .",
    "{PER} grew up in {LOC} before moving to {LOC} .",
    "Officials at {ORG} confirmed the report .",
    "Heavy snow closed roads across {LOC} on Monday .",
    "{PER} thanked the {NAT} fans after the match .",
    "The film was shot in {LOC} with a {NAT} crew .",
    "It rained all weekend , so the market was quiet .",
    "The committee will publish its findings in March .",
    "{PER} was elected mayor of {LOC} .",
    "{ORG} and {ORG} signed a research agreement .",
]
_NER_SLOTS: dict[str, tuple[list[str], str]] = {
    "PER": (_NER_PEOPLE, "PER"),
    "ORG": (_NER_ORGS, "ORG"),
    "LOC": (_NER_PLACES, "LOC"),
    "NAT": (_NER_NATIONALITIES, "MISC"),
    "EVENT": (_NER_EVENTS, "MISC"),
    "LANG": (_NER_LANGUAGES, "MISC"),
}


_WORD_RE = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def _ner_example(rng: random.Random) -> tuple[list[str], list[str]]:
    if rng.random() < 0.2:
        # sentences without any entity (reviews), so the tagger learns that most text has none
        tokens = _WORD_RE.findall(_sentiment_example(rng)[0])
        return tokens, ["O"] * len(tokens)
    tokens: list[str] = []
    tags: list[str] = []
    used: set[str] = set()
    for word in rng.choice(_NER_TEMPLATES).split():
        slot = word[1:-1] if word.startswith("{") and word.endswith("}") else None
        if slot is None:
            tokens.append(word)
            tags.append("O")
            continue
        choices, entity_type = _NER_SLOTS[slot]
        entity = rng.choice([c for c in choices if c not in used])
        used.add(entity)
        for i, part in enumerate(entity.split()):
            tokens.append(part)
            tags.append(("B-" if i == 0 else "I-") + entity_type)
    return tokens, tags


NER_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


# ---------------------------------------------------------------------------- writing
def _unique(make: Callable[[random.Random], tuple], rng: random.Random, count: int, seen: set) -> list[tuple]:
    out = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > count * 200:
            raise RuntimeError("the templates cannot produce enough distinct examples")
        example = make(rng)
        key = str(example[0])
        if key in seen:
            continue
        seen.add(key)
        out.append(example)
    return out


def render_files() -> dict[str, str]:
    """File name -> content of the quickstart data set."""
    rng = random.Random(SEED)
    files: dict[str, str] = {}
    seen: dict[str, set] = {"sentiment": set(), "topic": set(), "ner": set()}
    for split, size in SIZES.items():
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar=None)
        writer.writerow(["text", "label"])
        writer.writerows(_unique(_sentiment_example, rng, size, seen["sentiment"]))
        files[f"sentiment.{split}.tsv"] = buffer.getvalue()

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for text, label in _unique(_topic_example, rng, size, seen["topic"]):
            writer.writerow([TOPIC_LABELS.index(label) + 1, text])
        files[f"topic.{split}.csv"] = buffer.getvalue()

        lines = ["-DOCSTART- O", ""]
        for tokens, tags in _unique(_ner_example, rng, size, seen["ner"]):
            lines.extend(f"{token} {tag}" for token, tag in zip(tokens, tags))
            lines.append("")
        files[f"ner.{split}.conll"] = "\n".join(lines)
    return files


def write_files(out_dir: str | Path = QUICKSTART_DIR) -> list[Path]:
    """Write the data set into `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_files().items():
        path = out_dir / name
        path.write_text(content, encoding="utf-8", newline="\n")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover
    for path in write_files(sys.argv[1] if len(sys.argv) > 1 else QUICKSTART_DIR):
        print(path)
