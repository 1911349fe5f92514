"""The few texts the demo apps put in prompts and answers (an internal IT/HR help desk)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    question: str
    answer: str
    chunks: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic("How many vacation days do new employees get?",
          "New employees get 25 vacation days a year, prorated in the first year.",
          ("Full-time staff accrue 25 days of paid vacation per calendar year.",
           "In the first year, vacation is prorated by start month.",
           "Unused days carry over up to 5 days into the next year.")),
    Topic("How do I reset my VPN token?",
          "Open the self-service portal, choose 'VPN token', and follow the re-enrolment steps.",
          ("VPN tokens are re-enrolled from the self-service portal under 'VPN token'.",
           "Re-enrolment needs your laptop and your phone's authenticator app.",
           "Lost devices must be reported to the service desk first.")),
    Topic("What is the expense limit for client dinners?",
          "Client dinners are reimbursed up to 90 EUR per person with an itemised receipt.",
          ("Client entertainment is capped at 90 EUR per attendee.",
           "Receipts must be itemised; card slips alone are not accepted.",
           "Alcohol above two drinks per person is not reimbursed.")),
    Topic("Can I work from another country for a month?",
          "Yes, up to 30 days a year from EU countries, with manager approval in the HR tool.",
          ("Remote work abroad is allowed for up to 30 days per year within the EU.",
           "Requests go through the HR tool and need manager approval.",
           "Outside the EU, tax and security review is required.")),
    Topic("Which laptop models can I order?",
          "Standard staff can order the 14-inch or 16-inch business laptop; engineers can add a "
          "workstation.",
          ("The hardware catalogue lists a 14-inch and a 16-inch business laptop.",
           "Engineering roles may also order one workstation.",
           "Replacement cycles are three years.")),
    Topic("How long is parental leave?",
          "Parental leave is 16 weeks at full pay, plus statutory leave on top.",
          ("The company tops up parental leave to full pay for 16 weeks.",
           "Statutory leave applies in addition.",
           "Leave can be split into up to three blocks.")),
)

CHAT_PROMPTS: tuple[tuple[str, str], ...] = (
    ("Summarise this incident report in three bullet points.",
     "- Checkout latency rose after the 14:05 deploy\n- A cache flag was off\n"
     "- Rolled back at 14:40"),
    ("Draft a polite reply declining the meeting.",
     "Thank you for the invitation; unfortunately I can't join this time. Could we sync by email?"),
    ("Translate 'the invoice is overdue' into German.", "Die Rechnung ist überfällig."),
    ("Explain what a p95 latency is.",
     "The p95 latency is the value below which 95% of requests complete."),
    ("Write a SQL query counting orders per day.",
     "SELECT date_trunc('day', created_at) AS day, count(*) FROM orders GROUP BY 1 ORDER BY 1;"),
    ("Suggest a name for a team wiki page about on-call.", "On-call handbook: who, when and how."),
)

AGENT_TASKS: tuple[tuple[str, str, str], ...] = (
    # (task, search query, document fetched)
    ("Compare our Q3 cloud spend with Q2 and explain the difference.",
     "cloud spend Q3 vs Q2", "finance/cloud-costs-q3.md"),
    ("Find the root cause of last week's checkout outage.",
     "checkout outage postmortem", "incidents/2024-09-checkout.md"),
    ("Prepare a brief on the new data-retention regulation.",
     "data retention regulation 2024 summary", "legal/retention-brief.md"),
    ("List open security findings older than 30 days.",
     "open security findings age > 30d", "security/findings-export.csv"),
)

REFUSAL = "I'm sorry, but I can't help with that request."
REPEATED = "As mentioned before, the answer is as stated above."
UNGROUNDED = "Per the 2021 policy, this is handled by the regional office on a case-by-case basis."
