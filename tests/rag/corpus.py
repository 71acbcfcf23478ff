"""A small real corpus on distinct topics, and paraphrased questions whose answer is in one document."""

from __future__ import annotations

from typing import Any

DOCUMENTS: list[dict[str, Any]] = [
    {
        "id": "photosynthesis",
        "content": "Photosynthesis is the process by which green plants, algae and some bacteria turn light into "
        "chemical energy. Chlorophyll in the chloroplasts absorbs sunlight, which drives the splitting of water "
        "and releases oxygen; the energy is then used to fix carbon dioxide from the air into glucose.",
        "metadata": {"title": "How plants make food", "author": "ada", "tags": ["biology", "plants"], "year": 2019},
    },
    {
        "id": "volcanoes",
        "content": "A volcano forms where molten rock, called magma, rises from the mantle through the crust. "
        "When pressure from dissolved gases builds up, the magma erupts as lava, ash and volcanic bombs. Most "
        "volcanoes sit along tectonic plate boundaries, such as the Pacific Ring of Fire.",
        "metadata": {"title": "Volcanoes", "author": "grace", "tags": ["geology"], "year": 2021},
    },
    {
        "id": "sourdough",
        "content": "Sourdough bread is leavened by a starter, a fermented mix of flour and water that hosts wild "
        "yeast and lactic acid bacteria. Bakers feed the starter daily, mix it into the dough, and let the loaf "
        "proof slowly for many hours, which gives the crumb its tangy flavour and open texture.",
        "metadata": {"title": "Baking sourdough", "author": "ada", "tags": ["cooking", "bread"], "year": 2022},
    },
    {
        "id": "tcp",
        "content": "TCP provides reliable, ordered delivery of a byte stream between two hosts. A connection "
        "starts with a three-way handshake of SYN, SYN-ACK and ACK segments; lost segments are detected by "
        "missing acknowledgements and retransmitted, and congestion control slows the sender when the network "
        "is overloaded.",
        "metadata": {"title": "TCP in brief", "author": "linus", "tags": ["networking"], "year": 2018},
    },
    {
        "id": "marathon",
        "content": "Training for a marathon means building weekly mileage gradually, with one long run each "
        "weekend that grows towards thirty kilometres. Easy runs build aerobic endurance, interval sessions "
        "improve speed, and a taper in the last two weeks lets the legs recover before race day.",
        "metadata": {"title": "Marathon training", "author": "grace", "tags": ["sport", "running"], "year": 2020},
    },
    {
        "id": "roman-empire",
        "content": "The Western Roman Empire fell in 476 AD when the Germanic leader Odoacer deposed the last "
        "emperor, Romulus Augustulus. Historians point to economic decline, political instability, overreliance "
        "on mercenaries and pressure from migrating peoples as causes of the collapse.",
        "metadata": {"title": "The fall of Rome", "author": "mary", "tags": ["history"], "year": 2017},
    },
    {
        "id": "black-holes",
        "content": "A black hole is a region of spacetime where gravity is so strong that nothing, not even "
        "light, can escape once it crosses the event horizon. Stellar black holes form when a massive star "
        "collapses at the end of its life; supermassive ones sit at the centres of galaxies.",
        "metadata": {"title": "Black holes", "author": "mary", "tags": ["astronomy", "physics"], "year": 2023},
    },
    {
        "id": "coffee",
        "content": "Espresso is brewed by forcing hot water at about nine bars of pressure through finely ground, "
        "tightly packed coffee for twenty-five to thirty seconds. The result is a small, concentrated shot "
        "topped with crema, the base of drinks such as cappuccino and latte.",
        "metadata": {"title": "Espresso", "author": "linus", "tags": ["cooking", "coffee"], "year": 2024},
    },
]

# (paraphrased question, the document that answers it); few words shared with the answer on purpose.
QUESTIONS: list[tuple[str, str]] = [
    ("How do leaves convert sunshine into sugar?", "photosynthesis"),
    ("What makes a mountain spew melted stone?", "volcanoes"),
    ("Why does naturally fermented bread taste sour?", "sourdough"),
    ("How does the internet protocol guarantee packets arrive in sequence?", "tcp"),
    ("How should I prepare my body for a 42 km race?", "marathon"),
    ("When and why did ancient Rome collapse?", "roman-empire"),
    ("Why can't anything get out of a collapsed star?", "black-holes"),
    ("How is a strong Italian coffee shot made?", "coffee"),
]
