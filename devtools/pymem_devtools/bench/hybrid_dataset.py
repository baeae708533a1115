"""A seeded "agent memory" dataset for the hybrid-search benchmark (``bench_hybrid``).

Short memories (one to three sentences) of several tenants of three sizes, and
queries of two classes, each with exactly one relevant memory in its tenant:

* **exact term**: groups of *siblings*, memories that are word for word the same
  except for one rare term (a ticket id ``INC-20931``, an order ``ORD-58213``, an
  error code ``E4012``, a surname, a SKU, an invoice, a pull request, a booking
  reference). A dense embedding cannot tell siblings apart; the query names the
  term, in two wordings: ``term only`` (the term alone, ``INC-20931``) and
  ``reworded`` (the term in words the memory does not use, ``what did we decide
  about ticket INC-20931?``). Terms are unique within a tenant.
* **paraphrase**: :data:`PARAPHRASES`, hand-written pairs of a memory and a
  question that asks for its fact in other words (little word overlap), with
  slots (names, cities, months, numbers) filled per tenant. Each pair is used at
  most once per tenant, and the pairs state unrelated facts.

The rest of a tenant's rows are *filler* (reading notes, podcasts, small talk:
topics no query asks about). Every memory has a ``kind`` metadata value, one of
:data:`KINDS` drawn at random (so a filter on one matches about a quarter of a
tenant's rows); a filtered query filters on its answer's kind.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KINDS = ("note", "chat", "task", "event")
CLASSES = ("exact_reworded", "exact_term_only", "paraphrase")
CLASS_LABELS = {"exact_reworded": "exact term, reworded", "exact_term_only": "exact term, term only",
                "paraphrase": "paraphrase"}
BUCKETS = ("large", "mid", "small")


@dataclass(frozen=True)
class BucketSpec:
    """The tenants of one size bucket and what each holds."""

    tenants: int
    rows: int  # per tenant
    families: int  # exact-term families used (of FAMILIES)
    bodies: int  # sibling groups per family (of its bodies)
    siblings: int  # memories per sibling group
    targets: int  # siblings asked for (each in both wordings)
    paraphrases: int  # paraphrase pairs (of PARAPHRASES)


SCALES: dict[str, dict[str, BucketSpec]] = {
    # Sibling groups larger than k=10: a dense search cannot hold them all in its top 10.
    "tiny": {"large": BucketSpec(1, 200, 4, 1, 15, 8, 20), "mid": BucketSpec(1, 60, 2, 1, 12, 4, 8),
             "small": BucketSpec(2, 20, 1, 1, 10, 2, 4)},
    "quick": {"large": BucketSpec(1, 1_000, 8, 2, 20, 32, 70), "mid": BucketSpec(2, 150, 4, 1, 16, 8, 20),
              "small": BucketSpec(4, 25, 1, 1, 12, 3, 5)},
    "full": {"large": BucketSpec(1, 3_000, 8, 3, 25, 48, 70), "mid": BucketSpec(3, 300, 6, 1, 20, 12, 24),
             "small": BucketSpec(8, 30, 1, 1, 12, 3, 5)},
}


@dataclass(frozen=True)
class Memory:
    tenant: int
    text: str
    kind: str
    role: str  # "exact", "paraphrase" or "filler"


@dataclass(frozen=True)
class Query:
    tenant: int
    text: str
    answer: int  # index into HybridDataset.memories
    cls: str  # one of CLASSES


@dataclass
class HybridDataset:
    memories: list[Memory]
    queries: list[Query]
    tenant_bucket: list[str]  # per tenant

    def tenant_rows(self, tenant: int) -> list[int]:
        return [i for i, m in enumerate(self.memories) if m.tenant == tenant]


# --- exact-term families -------------------------------------------------------------

SURNAMES = (
    "Kowalczyk", "Okonkwo", "Haraldsen", "Villanueva", "Nakashima", "Przybylski", "Abernathy", "Quennell",
    "Oyelaran", "Szczepanik", "Thorvaldsen", "Iwasaki", "Mbeki", "Castellanos", "Fitzgibbon", "Lindqvist",
    "Vasquez-Ortega", "Zielinski", "Achterberg", "Rautenbach", "Kristiansen", "Obradovic", "Halvorsen",
    "Delacroix", "Yamaguchi", "Oduya", "Papadakis", "Wojciechowski", "Ferreira", "Ngata", "Sandoval",
    "Karamanlis", "Björklund", "Petrosyan", "Albrecht", "Muthukumar", "Ravensworth", "Esterhuizen",
    "Gallagher", "Tsvetkova", "Underhill", "Kaczmarek", "Oyelowo", "Valtonen", "Mendelsohn", "Arbuthnot",
    "Dragomir", "Hakobyan", "Lachance", "Murtagh", "Ostrowski", "Quintero", "Rosenkranz", "Sokolova",
    "Terzić", "Vuković", "Wetherby", "Yilmazer", "Zamorano", "Beaumont", "Chakraborty", "Dunleavy",
    "Eriksdottir", "Fairweather", "Grünewald", "Hollingsworth", "Ignatiev", "Jankowska", "Kavanagh",
    "Lindgren", "Montgomery", "Nwachukwu", "Oberholzer", "Pemberton", "Rasmussen", "Stojanović",
)
_COLORS = ("BLK", "WHT", "GRY", "RED", "BLU", "GRN", "NAV", "OAK")


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(10 ** (n - 1), 10 ** n - 1))


# name: (term generator, nouns a query may put before the term, sibling bodies with {t})
FAMILIES = {
    "ticket": (lambda rng: f"INC-{_digits(rng, 5)}", ("ticket", "incident"), (
        "Ticket {t}: the customer reported login failures after a password reset; we escalated it.",
        "Support ticket {t} is about the CSV export timing out for large workspaces; a fix is planned.",
        "Closed ticket {t} after confirming with the customer that the billing page loads again.")),
    "order": (lambda rng: f"ORD-{_digits(rng, 5)}", ("order", "purchase"), (
        "Order {t} shipped four days late because the warehouse ran out of boxes; the customer got a refund.",
        "The customer asked to change the delivery address on order {t} to their office building.",
        "Order {t} came back unopened, and the refund went to the original card.")),
    "error": (lambda rng: f"E{_digits(rng, 4)}", ("error", "error code"), (
        "Error {t} appears when the sync job loses its database connection; restarting the worker clears it.",
        "The mobile app shows error {t} when the session token has expired. Signing out and back in fixes it.",
        "Checkout fails with {t} whenever the payment provider takes longer than thirty seconds to answer.")),
    "surname": (lambda rng: rng.choice(SURNAMES), ("",), (
        "Met with Dr. {t} about the lab results; she wants a follow-up blood test in three weeks.",
        "Mr. {t} from the building association called about the roof repairs scheduled for spring.",
        "Interviewed {t} for the data engineer role: strong on SQL, weaker on system design.")),
    "sku": (lambda rng: f"SKU-{_digits(rng, 4)}-{rng.choice(_COLORS)}", ("item", "product"), (
        "The user reordered {t}, the standing desk frame, and wants an alert when it is back in stock.",
        "Item {t} arrived with a scratched side panel; a replacement was requested from the supplier.",
        "Stock of {t} is down to two units in the north warehouse.")),
    "invoice": (lambda rng: f"INV-2024-{_digits(rng, 4)}", ("invoice", "bill"), (
        "Invoice {t} was paid twice by mistake; finance will credit the duplicate on the next statement.",
        "Invoice {t} is still unpaid. The client says the purchase order number was missing from it.",
        "Sent invoice {t} to the client's accounts payable mailbox with the signed timesheets attached.")),
    "pull_request": (lambda rng: f"PR #{_digits(rng, 5)}", ("",), (
        "{t} changes the retry logic in the upload client and needs a second reviewer before merging.",
        "Reverted {t} because it broke the nightly build on the ARM runners.",
        "{t} bumps the TLS library; security asked for it to ship before the end of the month.")),
    "booking": (lambda rng: "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6)),
                ("booking", "reservation"), (
        "Flight booking {t}: Lisbon to Berlin on the 14th, one checked bag included.",
        "Hotel confirmation {t} covers three nights near the old town, breakfast included.",
        "Car rental {t} is for a compact car picked up at the airport desk on Friday evening.")),
}

REWORDED = (
    "what did we decide about {ref}?", "any update on {ref}?", "remind me what happened with {ref}",
    "can you find my notes on {ref}?", "what do I need to know about {ref}?", "what was the outcome for {ref}?",
    "where did we land on {ref}?", "pull up whatever we have on {ref}", "what's the story behind {ref}?",
    "I forgot the details of {ref}, what were they?",
)

# --- paraphrase pairs: (memory, query); slots {name} {kid} {city} {month} {weekday} {number} {day} ---

PARAPHRASES = (
    ("My daughter {kid} is allergic to peanuts, so we always check labels before buying snacks.",
     "Which food does my child react badly to?"),
    ("{name} prefers a text message over a phone call.", "How does my coworker like people to get in touch?"),
    ("The car's annual inspection is due at the end of {month}.", "When does the vehicle need its yearly safety check?"),
    ("I switched to a vegetarian diet last spring and no longer eat meat or fish.",
     "Do I still have steak or salmon these days?"),
    ("Our landlord raised the rent by {number} percent starting with the next lease.",
     "How much more will the apartment cost us under the new contract?"),
    ("I get seasick on boats, so ferries are out for the {city} trip.", "Why should I avoid sailing when I travel?"),
    ("The spare house key is hidden under the blue flowerpot by the back door.",
     "Where did we stash the extra key to get into our home?"),
    ("{name} from accounting is leaving the company at the end of the quarter.",
     "Which finance colleague is resigning soon?"),
    ("I can't have caffeine after 2 pm or I lie awake all night.", "What's my cutoff for coffee so I can sleep?"),
    ("The Wi-Fi password for the cabin is written inside the kitchen cupboard door.",
     "Where can I find the internet login at the holiday lodge?"),
    ("My passport expires in {month} next year, so renew it before booking anything abroad.",
     "When is my travel document no longer valid?"),
    ("{name} is training for a marathon and runs every morning before work.",
     "Which friend is preparing for a long-distance race?"),
    ("We agreed the kids get one hour of screen time on school nights.",
     "How long can the children use tablets on weekdays?"),
    ("The dentist said I need a crown on my upper left molar.", "What dental work is coming up for my tooth?"),
    ("I'm terrified of heights and avoid glass elevators and balconies.",
     "Am I comfortable on a rooftop observation deck?"),
    ("Our team's budget for the offsite is capped at {number} thousand dollars.",
     "How much money can we spend on the retreat?"),
    ("The cat needs her thyroid pill twice a day, mixed into wet food.",
     "What medication does our pet take, and how often?"),
    ("I left my winter coat at {name}'s place after the party.", "Where is my warm jacket?"),
    ("The plumber is coming on {weekday} between 9 and 11 to fix the leaking sink.",
     "When will someone repair the dripping tap?"),
    ("My mother's birthday is on the {day} of {month}; she likes orchids.",
     "What flowers should I send mum, and on which date?"),
    ("I'm learning Portuguese because we're relocating to Lisbon next year.",
     "Which language am I studying for the move abroad?"),
    ("The gym membership renews automatically every January unless I cancel in December.",
     "When must I stop the fitness club subscription to avoid another charge?"),
    ("{name} is colour-blind, so charts for them should not rely on red versus green.",
     "Why should graphs for my teammate avoid certain hues?"),
    ("We bought the sofa with a five-year warranty from the furniture store on Main Street.",
     "How long is the couch guaranteed?"),
    ("I prefer aisle seats on flights because I get up often.", "Where do I like to sit on a plane?"),
    ("The quarterly report goes to the board on the last Friday of the month.",
     "When must the directors receive the three-month summary?"),
    ("I'm lactose intolerant; oat milk is fine.", "Can I have dairy products?"),
    ("The garage door opener's battery died; a replacement is in the junk drawer.",
     "Where's the spare cell for the remote that opens the carport?"),
    ("{name} and I split the electricity bill evenly every month.",
     "How do my roommate and I share the power costs?"),
    ("I hate cilantro: it tastes like soap to me.", "Which herb should recipes leave out for me?"),
    ("The project deadline moved back a month because the vendor delivered late.",
     "Why did the launch date slip?"),
    ("Our neighbours' dog barks all night when they are away.",
     "What keeps us awake when the people next door travel?"),
    ("I keep my tax documents in the grey filing cabinet, second drawer.",
     "Where are the papers for the revenue office stored?"),
    ("My doctor wants me to walk at least 8,000 steps a day.", "What daily exercise target did the physician set?"),
    ("The printer on the third floor jams if you use the thick paper.",
     "Which office copier has trouble with heavy card stock?"),
    ("{name} speaks fluent Japanese and offered to translate the contract.",
     "Who could interpret the agreement from Tokyo for us?"),
    ("I'm saving for a house deposit and put aside {number} hundred every payday.",
     "How much do I set aside toward buying a home?"),
    ("The kids' school starts at 8:15 and the gates close at 8:30.",
     "What time do the children need to arrive for class?"),
    ("I'm allergic to penicillin; amoxicillin gave me hives.", "Which antibiotics cause me a reaction?"),
    ("We decided to paint the nursery a pale sage green.", "What colour will the baby's room be?"),
    ("The company reimburses home internet up to fifty dollars a month.", "Will work pay for my broadband?"),
    ("{name} is vegan and won't eat honey either.", "What should I cook for a friend who avoids all animal products?"),
    ("My left knee hurts when I run downhill, so I stick to flat routes.", "Why do I avoid hilly jogging paths?"),
    ("Trash goes out on {weekday} night; recycling every other week.", "When do the bins get collected?"),
    ("I'm afraid of dogs since I was bitten as a child.", "Why am I nervous around puppies?"),
    ("The conference in {city} is in the second week of {month}, and I'm giving a talk there.",
     "When is my speaking engagement at the industry event?"),
    ("Grandpa's hearing aid batteries are size 312.", "What kind of cells does my grandfather's ear device use?"),
    ("We keep the emergency cash in an envelope taped under the bottom desk drawer.",
     "Where is the backup money hidden?"),
    ("I take my coffee black with no sugar.", "How do I like my morning brew?"),
    ("The server room's air conditioning fails when it gets above 35 degrees outside.",
     "When does the cooling for the data centre break down?"),
    ("{name} is pregnant and due in {month}.", "When is my colleague expecting her baby?"),
    ("I get migraines from flickering fluorescent lights.", "What triggers my bad headaches?"),
    ("Our mortgage rate is fixed for another three years.", "How long until the home loan interest can change?"),
    ("The office closes early on the Friday before public holidays.",
     "When does the workplace shut ahead of a long weekend?"),
    ("My brother {name} lives in {city} and works as a nurse.", "What does my sibling do for a living?"),
    ("I need eight hours of sleep or I'm useless the next day.", "How much rest do I require each night?"),
    ("We sold the old piano to a music teacher for a few hundred dollars.",
     "What happened to the instrument we used to have?"),
    ("I'm on a low-sodium diet for my blood pressure.", "Should I limit salt in my meals?"),
    ("{name} manages the vendor relationship with our cloud provider.",
     "Who is our main contact for the hosting supplier?"),
    ("The hiking boots I bought are half a size too small; I should return them.",
     "Which footwear needs to go back to the shop?"),
    ("My favourite restaurant is the little Ethiopian place near the station.", "Where do I most like to eat out?"),
    ("We're not allowed pets in this apartment under the lease.", "Can we get a kitten where we live?"),
    ("I promised {name} I'd review the slides before the all-hands.",
     "What did I commit to doing for my coworker ahead of the company meeting?"),
    ("The sourdough starter needs feeding every twelve hours.", "How often do I have to top up the bread culture?"),
    ("My car gets about forty miles per gallon on the motorway.", "How fuel-efficient is my vehicle on highways?"),
    ("The insurance claim for the water damage was approved last week.",
     "Did the policy cover the flooding repairs?"),
    ("I prefer morning meetings; after 4 pm I'm too tired to focus.", "When am I at my sharpest for calls?"),
    ("The babysitter charges {number} dollars an hour and needs a ride home after ten.",
     "How much does the nanny cost, and does she need a lift?"),
    ("{name} recommended a physiotherapist for my shoulder.", "Who suggested someone to treat my arm injury?"),
    ("Our family doctor retired, and we haven't registered with a new clinic yet.", "Do we currently have a GP?"),
)

SLOTS = {
    "name": ("Priya", "Tomasz", "Aisha", "Mateo", "Ingrid", "Kwame", "Lucia", "Hiroshi", "Fatima", "Oliver",
             "Sven", "Amara", "Diego", "Mei", "Rafael", "Noor"),
    "kid": ("Maya", "Lena", "Zoe", "Ava", "Nora", "Ella"),
    "city": ("Porto", "Krakow", "Valencia", "Bergen", "Ljubljana", "Tallinn", "Bologna", "Ghent"),
    "month": ("March", "April", "June", "September", "October", "November"),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday"),
    "number": ("3", "4", "5", "6", "8", "12"),
    "day": ("3rd", "9th", "14th", "21st", "27th"),
}

# --- filler: topics no query asks about -------------------------------------------------

FILLER_TOPICS = (
    "medieval castle architecture", "deep-sea bioluminescence", "the history of the bicycle", "volcanic islands",
    "origami tessellations", "Roman aqueducts", "chess endgames", "bebop jazz", "lighthouse keepers",
    "glacier retreat", "the history of typography", "Antarctic expeditions", "honeybee navigation",
    "the printing press", "tidal energy", "old maps and cartography", "birdsong dialects", "Byzantine mosaics",
    "comet orbits", "the Silk Road", "early mechanical computers", "suspension bridges", "desert ecosystems",
    "coral reef restoration", "Norse sagas", "ancient astronomy", "sailing knots", "rare postage stamps",
    "clock making", "whale migration", "the Apollo program", "haiku poetry", "Renaissance painters",
    "the Dead Sea scrolls", "lunar geology", "octopus intelligence", "Art Deco posters", "the Hanseatic League",
    "steam locomotives", "quantum error correction", "prime number puzzles", "the migration of monarch butterflies",
    "Icelandic geothermal plants", "Mayan calendars", "the invention of the telescope", "tea ceremonies",
    "vintage fountain pens", "the Great Fire of London", "Arctic foxes", "bonsai trees",
)
FILLER_TEMPLATES = (
    "Skimmed an article about {topic} {when}.",
    "Bookmarked a long read on {topic} to finish later.",
    "Listened to a podcast episode about {topic} on the commute {when}.",
    "Watched a documentary on {topic}; it was {adj}.",
    "Chatted briefly about {topic} at lunch {when}. Nothing to follow up.",
    "Saved a link about {topic} to the reading list.",
    "Someone in the group chat shared a video on {topic}; it was {adj}.",
    "Started a book about {topic} {when}. Only a few chapters in so far.",
    "Said thanks for the summary on {topic}; no action needed.",
    "Found an old museum leaflet about {topic} and recycled it.",
)
FILLER_WHEN = ("this morning", "yesterday", "last night", "over the weekend", "on Tuesday", "after dinner",
               "during the break", "last week")
FILLER_ADJ = ("surprisingly good", "a bit slow", "fascinating", "too long", "well made", "forgettable",
              "oddly relaxing", "hard to follow")


def _fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def _exact_memories(rng: random.Random, spec: BucketSpec, used: set[str]):
    """Sibling groups and the targets asked for: (texts, [(row in texts, term, family)])."""
    texts, groups = [], []
    for family in rng.sample(sorted(FAMILIES), spec.families):
        make_term, _, bodies = FAMILIES[family]
        for body in rng.sample(bodies, spec.bodies):
            members = []
            while len(members) < spec.siblings:
                term = make_term(rng)
                if term.lower() in used:
                    continue
                used.add(term.lower())
                members.append((len(texts), term, family))
                texts.append(body.format(t=term))
            groups.append(members)
    # Targets spread over the groups, round-robin.
    order = [rng.sample(g, len(g)) for g in rng.sample(groups, len(groups))]
    targets = [order[i % len(order)][i // len(order)] for i in range(min(spec.targets, len(texts)))]
    return texts, targets


def _reworded(rng: random.Random, term: str, family: str) -> str:
    noun = rng.choice(FAMILIES[family][1])
    ref = f"{noun} {term}" if noun and rng.random() < 0.5 else term
    return rng.choice(REWORDED).format(ref=ref)


def _filler(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    out = []
    while len(out) < count:
        text = rng.choice(FILLER_TEMPLATES).format(topic=rng.choice(FILLER_TOPICS), when=rng.choice(FILLER_WHEN),
                                                   adj=rng.choice(FILLER_ADJ))
        if text not in taken:
            taken.add(text)
            out.append(text)
    return out


def make_hybrid_dataset(scale: str, seed: int = 26) -> HybridDataset:
    """The dataset of ``scale`` (tiny, quick or full): the same for the same seed."""
    rng = random.Random(seed)
    memories: list[Memory] = []
    queries: list[Query] = []
    buckets: list[str] = []
    for bucket in BUCKETS:
        spec = SCALES[scale][bucket]
        for _ in range(spec.tenants):
            tenant = len(buckets)
            buckets.append(bucket)
            exact, targets = _exact_memories(rng, spec, set())
            slots = {name: rng.choice(values) for name, values in SLOTS.items()}
            pairs = rng.sample(PARAPHRASES, spec.paraphrases)
            para = [_fill(memory, slots) for memory, _ in pairs]
            filler_count = spec.rows - len(exact) - len(para)
            if filler_count < 0:
                raise ValueError(f"{scale}/{bucket}: {spec.rows} rows cannot hold {len(exact) + len(para)} memories")
            filler = _filler(rng, filler_count, set(exact) | set(para))
            rows = ([(t, "exact") for t in exact] + [(t, "paraphrase") for t in para]
                    + [(t, "filler") for t in filler])
            # Stored in a shuffled order; position maps a row of `rows` to its index in `memories`.
            order = rng.sample(range(len(rows)), len(rows))
            position = {}
            for i in order:
                position[i] = len(memories)
                memories.append(Memory(tenant, rows[i][0], rng.choice(KINDS), rows[i][1]))
            for row, term, family in targets:
                queries.append(Query(tenant, term, position[row], "exact_term_only"))
                queries.append(Query(tenant, _reworded(rng, term, family), position[row], "exact_reworded"))
            for i, (_, question) in enumerate(pairs):
                queries.append(Query(tenant, question, position[len(exact) + i], "paraphrase"))
    return HybridDataset(memories, queries, buckets)
