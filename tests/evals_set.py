"""The labelled set of the built-in evaluators: (question, context, answer) triples with
what each evaluator should say, built from hand-written base facts.

Each fact has a question, three context chunks that answer it, a supported answer in two
wordings, one number and one name in the answer that can be changed, and a claim the
context does not make. Variations are generated from them: supported answers; one
changed number; a swapped name; an added unsupported claim; an answer to another
question (off-topic); refusals; repetitive answers; answers that end in a loop or stop
mid-sentence; JSON asked for, given well-formed or broken. Retrieval relevance is judged
per chunk: a fact's own chunks are relevant to its question, chunks of other facts are not.

``triples()`` and ``chunk_pairs()`` are deterministic (seeded), so benchmark numbers
repeat. Used by bench/evals_bench.py and tests/unit/test_evals_quality.py.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    question: str
    chunks: tuple[str, str, str]
    answer: str
    answer2: str
    number: tuple[str, str]  # (in the answers, a wrong one)
    name: tuple[str, str]  # (in the answers, a wrong one)
    claim: str  # unsupported by the chunks


FACTS: tuple[Fact, ...] = (
    Fact("How many days of annual leave does a new hire get?",
         ("Every full-time employee earns 28 days of paid annual leave per year.",
          "During the first year the leave is reduced in proportion to the start date.",
          "Leave requests are filed in Workday at least two weeks ahead."),
         "A new hire earns 28 days of annual leave, prorated in the first year, and books it "
         "in Workday.",
         "You get 28 paid leave days a year; in year one it is reduced by your start date. "
         "Requests go through Workday.",
         ("28", "35"), ("Workday", "SAP"),
         "Managers can also grant ten extra days for good performance."),
    Fact("What is the maximum hotel rate on business trips to London?",
         ("Hotel stays in London are reimbursed up to 220 GBP per night.",
          "Bookings must be made through the Egencia travel portal.",
          "Breakfast is included in the nightly limit."),
         "In London the hotel limit is 220 GBP per night, booked through Egencia, breakfast "
         "included.",
         "The cap for a London hotel night is 220 GBP including breakfast; book it in Egencia.",
         ("220", "340"), ("Egencia", "Expedia"),
         "Suites are allowed when the trip lasts longer than a week."),
    Fact("How often must I change my network password?",
         ("Network passwords expire every 90 days.",
          "A new password needs at least 14 characters.",
          "The last 5 passwords cannot be reused."),
         "Your network password expires every 90 days and must have at least 14 characters.",
         "Change it every 90 days; the new one needs 14 characters or more and cannot repeat "
         "your last 5.",
         ("90", "30"), ("network", "email"),
         "Passwords shared with a colleague are reset automatically by Okta."),
    Fact("Who approves purchases above the team budget?",
         ("Purchases above the team budget need approval from the Finance Director.",
          "Requests are raised in Coupa with a quote attached.",
          "Approval usually takes 3 working days."),
         "The Finance Director approves them; raise the request in Coupa with a quote.",
         "Anything over the team budget goes to the Finance Director for approval through "
         "Coupa, which takes about 3 working days.",
         ("3", "10"), ("Coupa", "Ariba"),
         "The CEO must also sign any purchase made in December."),
    Fact("How long is the probation period for new staff?",
         ("New staff serve a probation period of six months.",
          "Either side may end the contract with two weeks' notice during probation.",
          "A review meeting with HR takes place after 3 months."),
         "Probation lasts six months, with a review meeting with HR after 3 months.",
         "New staff are on probation for six months; HR holds a review after 3 months and "
         "notice is two weeks meanwhile.",
         ("3", "5"), ("HR", "Legal"),
         "Staff on probation cannot take any leave at all."),
    Fact("What is the company pension contribution?",
         ("The company pays 6 percent of base salary into the pension plan.",
          "Employees who add 3 percent of their own receive a further 2 percent match.",
          "The plan is run by Aviva."),
         "The company contributes 6 percent of base salary, plus a 2 percent match if you add "
         "3 percent, through Aviva.",
         "You get 6 percent of base pay from the company into the Aviva plan, and 2 percent "
         "more when you put in 3 percent yourself.",
         ("6", "9"), ("Aviva", "Allianz"),
         "Contributions double after ten years of service."),
    Fact("Where do I report a lost company phone?",
         ("A lost or stolen phone must be reported to the IT Service Desk immediately.",
          "The Service Desk wipes the device remotely through Intune.",
          "A replacement is shipped within 2 business days."),
         "Report it to the IT Service Desk right away; they wipe it through Intune and ship "
         "a replacement within 2 business days.",
         "Tell the IT Service Desk at once. The phone is wiped remotely with Intune and a new "
         "one arrives in 2 business days.",
         ("2", "7"), ("Intune", "Jamf"),
         "You will be charged 150 EUR for the lost device."),
    Fact("How many monitors can I get for my home office?",
         ("Home office staff may order up to two external monitors.",
          "Monitors are ordered from the Dell catalogue in ServiceNow.",
          "A desk chair allowance of 300 EUR is also available."),
         "You can order up to two monitors from the Dell catalogue in ServiceNow.",
         "Home office workers may have two external monitors, ordered via ServiceNow from "
         "Dell, and a 300 EUR chair allowance.",
         ("two", "four"), ("Dell", "Lenovo"),
         "Standing desks are delivered free of charge to every employee."),
    Fact("When is the payroll paid each month?",
         ("Salaries are paid on the 25th of each month.",
          "When the 25th falls on a weekend, payment moves to the Friday before.",
          "Payslips are published in the ADP portal."),
         "Salaries arrive on the 25th, or the Friday before if it is a weekend; payslips are "
         "in ADP.",
         "Pay day is the 25th of the month, moved to the preceding Friday on weekends, with "
         "the payslip in the ADP portal.",
         ("25", "28"), ("ADP", "Personio"),
         "Bonuses are always paid in March together with a pay rise."),
    Fact("How much is the yearly training budget per employee?",
         ("Each employee has a training budget of 1,500 EUR per year.",
          "Courses are booked through the Learning team.",
          "Unspent budget does not carry over."),
         "Every employee gets 1,500 EUR a year for training, booked through the Learning team.",
         "The training budget is 1,500 EUR per person per year; the Learning team books "
         "courses and leftovers expire.",
         ("1,500", "2,500"), ("Learning", "Finance"),
         "Employees must repay the cost if they leave within two years."),
    Fact("Which VPN client should I install?",
         ("The supported VPN client is GlobalProtect.",
          "It is installed from the Company Portal app.",
          "Connections require the Okta Verify push approval."),
         "Install GlobalProtect from the Company Portal and approve the Okta Verify push.",
         "Use GlobalProtect, which you get from the Company Portal app; sign-ins need an Okta "
         "Verify approval.",
         ("", ""), ("GlobalProtect", "OpenVPN"),
         "The VPN is switched off every night between 1 and 3 in the morning."),
    Fact("How many sick days can I take without a doctor's note?",
         ("Employees may be absent sick for up to 3 days without a medical certificate.",
          "From the fourth day a doctor's note is required.",
          "Sickness is reported to your manager before 9 am."),
         "Up to 3 sick days need no doctor's note; from the fourth day one is required.",
         "You can be off sick for 3 days without a certificate, and you tell your manager "
         "before 9 am.",
         ("3", "5"), ("manager", "HR"),
         "Sick days beyond ten per year are unpaid."),
    Fact("What is the office Wi-Fi network for guests?",
         ("Visitors connect to the Guest-Net wireless network.",
          "The guest password changes every Monday and is shown at reception.",
          "Guest access is limited to 8 hours per day."),
         "Guests use Guest-Net; the password is at reception and changes each Monday.",
         "Visitors join the Guest-Net network with the weekly password from reception, for at "
         "most 8 hours a day.",
         ("8", "24"), ("Monday", "Friday"),
         "Guests may also plug into the wired network in meeting rooms."),
    Fact("How far in advance must I book a meeting room for external clients?",
         ("Client meeting rooms on floor 4 must be booked 48 hours in advance.",
          "Bookings are made in Outlook with the room calendar.",
          "Catering can be added through the Facilities team."),
         "Book floor 4 client rooms 48 hours ahead in Outlook; Facilities can add catering.",
         "Client rooms need a booking 48 hours before, made through Outlook; catering comes "
         "from Facilities.",
         ("48", "24"), ("Outlook", "Slack"),
         "Each client meeting may last at most ninety minutes."),
    Fact("What is the mileage rate for using my own car?",
         ("Business travel in a private car is reimbursed at 0.30 EUR per kilometre.",
          "Trips are claimed in Concur with start and end addresses.",
          "Commuting to the usual office is not reimbursed."),
         "You are paid 0.30 EUR per kilometre, claimed in Concur with the addresses.",
         "Private car trips for work pay 0.30 EUR a kilometre; claim them in Concur, but not "
         "your commute.",
         ("0.30", "0.45"), ("Concur", "Expensify"),
         "Fuel cards are issued to anyone who drives more than once a month."),
    Fact("How do I get access to the production database?",
         ("Production database access is requested through a ticket in Jira.",
          "The request must be approved by the Data Platform lead.",
          "Access expires automatically after 30 days."),
         "Open a Jira ticket; the Data Platform lead approves it and access lasts 30 days.",
         "Request it with a Jira ticket approved by the Data Platform lead; it expires after "
         "30 days.",
         ("30", "90"), ("Jira", "Trello"),
         "Interns are never given production access."),
    Fact("How many weeks of paternity leave are offered?",
         ("Fathers and second parents receive 8 weeks of paid leave.",
          "The leave must be taken within the first year after birth.",
          "It can be split into two blocks."),
         "Second parents get 8 weeks of paid leave within the first year, in up to two blocks.",
         "The company offers 8 paid weeks to fathers and second parents, used in the first "
         "year and splittable in two.",
         ("8", "12"), ("first", "second"),
         "Parents adopting a child get the same leave plus a 2,000 EUR grant."),
    Fact("What is the deadline for submitting expense claims?",
         ("Expense claims must be submitted within 60 days of the expense.",
          "Late claims need written approval from the Controller.",
          "Claims are paid with the next monthly salary."),
         "Submit claims within 60 days; later ones need the Controller's approval.",
         "You have 60 days after the expense to claim it, otherwise the Controller must "
         "approve it in writing.",
         ("60", "90"), ("Controller", "Treasurer"),
         "Claims under 20 EUR do not need a receipt."),
    Fact("Can I bring my dog to the office?",
         ("Dogs are welcome on the ground floor of the Berlin office on Fridays.",
          "Owners must register the dog with Facilities first.",
          "Dogs are not allowed in the kitchen or meeting rooms."),
         "Yes, on Fridays on the ground floor in Berlin, once you register the dog with "
         "Facilities.",
         "You may bring a registered dog to the Berlin ground floor on Fridays, but not into "
         "the kitchen or meeting rooms.",
         ("", ""), ("Berlin", "Munich"),
         "The company pays for pet insurance for office dogs."),
    Fact("How do I request a new software licence?",
         ("Software licences are requested in the ServiceNow catalogue.",
          "Licences above 500 EUR per year need a cost centre approval.",
          "Approved licences are assigned within 1 working day."),
         "Request it in the ServiceNow catalogue; over 500 EUR a year it needs cost centre "
         "approval.",
         "Ask for the licence through ServiceNow. If it costs more than 500 EUR yearly, the "
         "cost centre must approve.",
         ("500", "1,000"), ("ServiceNow", "Zendesk"),
         "Open-source tools may be installed without asking anyone."),
    Fact("What is the retention period for customer invoices?",
         ("Customer invoices are kept for 10 years to meet tax law.",
          "They are archived in the SAP document store.",
          "Deletion after the period is automatic."),
         "Invoices are kept 10 years in the SAP archive and then deleted automatically.",
         "Tax law makes us keep customer invoices for 10 years; SAP archives them and deletes "
         "them afterwards.",
         ("10", "7"), ("SAP", "Oracle"),
         "Paper copies must also be stored in the basement."),
    Fact("How long does the laptop battery warranty last?",
         ("Company laptops come with a battery warranty of 24 months.",
          "Faulty batteries are swapped at the IT bar on floor 2.",
          "Swelling batteries must be reported at once."),
         "The battery warranty lasts 24 months; swaps happen at the IT bar on floor 2.",
         "Laptop batteries are covered for 24 months and replaced at the floor 2 IT bar.",
         ("24", "36"), ("IT", "HR"),
         "Chargers are covered for the whole life of the laptop."),
    Fact("How many people can use the bike leasing scheme?",
         ("All permanent employees can lease up to two bikes through JobRad.",
          "The lease runs for 36 months and is paid from gross salary.",
          "Insurance is included in the monthly rate."),
         "Permanent employees can lease up to two bikes through JobRad for 36 months.",
         "Every permanent employee may lease two bikes with JobRad, over 36 months from gross "
         "pay, insured.",
         ("36", "48"), ("JobRad", "Bikeleasing"),
         "Electric scooters are included in the scheme as well."),
    Fact("Who do I contact about a payslip error?",
         ("Payslip errors are handled by the Payroll team.",
          "Write to payroll support with your employee number.",
          "Corrections are paid within 5 working days."),
         "Contact the Payroll team with your employee number; corrections are paid within 5 "
         "working days.",
         "Payroll handles payslip mistakes: write to them with your employee number and the "
         "fix is paid in 5 working days.",
         ("5", "15"), ("Payroll", "Legal"),
         "Errors older than a month cannot be corrected."),
)

REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I am unable to answer this question.",
    "Sorry, I cannot share that information.",
    "I won't be able to assist with this one.",
    "As an AI assistant I must decline to answer.",
    "I'm afraid that is not something I can help with.",
)
FILLERS = (
    "As mentioned before, the answer is as stated above.",
    "Please refer to the answer given earlier.",
    "This is the same as what was said before.",
)


@dataclass(frozen=True)
class Triple:
    question: str
    context: tuple[str, ...]
    answer: str
    kind: str
    labels: dict[str, int]  # evaluator -> 1 (good / present) or 0
    prompt: str = ""


def _changed(answer: str, old: str, new: str) -> str | None:
    return answer.replace(old, new, 1) if old and old in answer else None


def triples(seed: int = 12) -> list[Triple]:
    rng = random.Random(seed)
    out: list[Triple] = []
    for i, f in enumerate(FACTS):
        ctx = f.chunks
        other = FACTS[(i + 1 + rng.randrange(len(FACTS) - 1)) % len(FACTS)]
        for a in (f.answer, f.answer2):
            out.append(Triple(f.question, ctx, a, "supported",
                              {"groundedness": 1, "relevance": 1, "coherence": 1,
                               "repetition": 0, "refusal": 0}))
        wrong_number = _changed(f.answer, *f.number) or _changed(f.answer2, *f.number)
        if wrong_number:
            out.append(Triple(f.question, ctx, wrong_number, "changed_number",
                              {"groundedness": 0}))
        swapped = _changed(f.answer, *f.name) or _changed(f.answer2, *f.name)
        if swapped:
            out.append(Triple(f.question, ctx, swapped, "swapped_name", {"groundedness": 0}))
        out.append(Triple(f.question, ctx, f"{f.answer} {f.claim}", "added_claim",
                          {"groundedness": 0}))
        out.append(Triple(f.question, ctx, other.answer, "off_topic",
                          {"groundedness": 0, "relevance": 0}))
        out.append(Triple(f.question, ctx, rng.choice(REFUSALS), "refusal",
                          {"refusal": 1, "relevance": 0}))
        filler = rng.choice(FILLERS)
        repeats = rng.randint(2, 5)
        looped = " ".join([f.answer] + [filler] * repeats)
        out.append(Triple(f.question, ctx, looped, "repetitive",
                          {"repetition": 1, "coherence": 0, "refusal": 0}))
        out.append(Triple(f.question, ctx, " ".join([f.answer] * rng.randint(2, 3)),
                          "repeated_answer", {"repetition": 1, "coherence": 0}))
        words = f.answer2.split()
        cut = " ".join(words[: max(4, len(words) // 2)]).rstrip(".,;")
        degenerate = (f"{cut} " + " ".join([words[-1].strip('.')] * rng.randint(6, 10))
                      if rng.random() < 0.5 else f"{f.answer} {cut}")
        out.append(Triple(f.question, ctx, degenerate, "degenerate_ending",
                          {"coherence": 0}))
        prompt = f"{f.question} Reply as JSON with a field 'answer'."
        out.append(Triple(f.question, ctx, json.dumps({"answer": f.answer}), "json_valid",
                          {"format_validity": 1}, prompt))
        broken = json.dumps({"answer": f.answer})[: -rng.randint(2, 12)]
        out.append(Triple(f.question, ctx, rng.choice([broken, f.answer]), "json_invalid",
                          {"format_validity": 0}, prompt))
    return out


def chunk_pairs(seed: int = 12) -> list[tuple[str, str, int]]:
    """(question, chunk, relevant): each fact's own chunks, and three of other facts."""
    rng = random.Random(seed)
    out: list[tuple[str, str, int]] = []
    for i, f in enumerate(FACTS):
        out.extend((f.question, c, 1) for c in f.chunks)
        others = [o for j, o in enumerate(FACTS) if j != i]
        out.extend((f.question, rng.choice(rng.choice(others).chunks), 0) for _ in range(3))
    return out
