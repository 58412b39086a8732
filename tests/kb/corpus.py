"""A small knowledge base with known answers: the documents of a fictional company and
questions a customer would ask, each with the document that answers it. Some questions
are paraphrases (vector search's strength), some name exact codes or terms (full text's)."""

from __future__ import annotations

DOCUMENTS: dict[str, str] = {
    "refunds.md": "# Refund policy\n\nYou can get your money back within 30 days of purchase. "
    "Refunds go to the original payment card and take five to ten business days to appear.",
    "shipping.md": "# Shipping\n\nOrders ship from our warehouse in Rotterdam. Standard delivery "
    "takes three to five working days within the EU; express delivery arrives the next day.",
    "international.md": "# International orders\n\nWe deliver to 40 countries outside the EU. "
    "Customs duties and import taxes are paid by the recipient on arrival.",
    "password.md": "# Resetting your password\n\nClick 'Forgot password' on the sign-in page and "
    "follow the link we email you. The link expires after one hour.",
    "two_factor.md": "# Two-factor authentication\n\nProtect your account with an authenticator "
    "app. Enable 2FA under Settings, Security, and scan the QR code.",
    "pricing.md": "# Plans and pricing\n\nThe Starter plan costs 29 euros per month for three "
    "seats. The Growth plan costs 99 euros per month for fifteen seats.",
    "enterprise.md": "# Enterprise\n\nEnterprise contracts include single sign-on, a dedicated "
    "success manager and a 99.95% uptime commitment, priced per agreement.",
    "cancel.md": "# Cancelling a subscription\n\nYou can stop your subscription at any time from "
    "the Billing page; it stays active until the end of the paid period.",
    "invoices.md": "# Invoices\n\nInvoices are issued on the first day of each month and can be "
    "downloaded as PDF from the Billing page. VAT numbers are shown on every invoice.",
    "warranty.md": "# Warranty\n\nAll hardware carries a two-year warranty covering manufacturing "
    "defects. Damage from drops or water is not covered.",
    "battery.md": "# Battery care\n\nCharge the HX-200 headset fully before first use. A full "
    "charge lasts about 20 hours of talk time.",
    "pairing.md": "# Pairing Bluetooth devices\n\nHold the power button of the HX-200 for five "
    "seconds until the light blinks blue, then choose it in your phone's Bluetooth list.",
    "error_e42.md": "# Error E42\n\nError code E42 means the base station lost its network "
    "connection. Restart the router, then unplug the base station for ten seconds.",
    "api_limits.md": "# API rate limits\n\nThe REST API allows 1,200 requests per minute per "
    "user. Going over returns status 429 with a Retry-After header.",
    "webhooks.md": "# Webhooks\n\nWebhook calls are signed with HMAC-SHA256 in the "
    "X-Signature header; verify it with your webhook secret before trusting the payload.",
    "data_export.md": "# Exporting your data\n\nAccount owners can download all contacts and "
    "conversations as a CSV archive from Settings, Data export.",
    "gdpr.md": "# Privacy and GDPR\n\nWe process personal data only in EU data centres. To "
    "have your personal information erased, write to privacy@example.com.",
    "support_hours.md": "# Support hours\n\nOur support team answers chat and phone from 8:00 "
    "to 20:00 CET on weekdays, and from 10:00 to 16:00 on Saturdays.",
    "onboarding.md": "# Getting started\n\nCreate your workspace, invite your teammates by "
    "email, and connect your first channel: chat, voice or email.",
    "voice_agent.md": "# Voice agents\n\nA voice agent answers phone calls with a synthetic "
    "voice. Choose the voice and the greeting in the agent's settings.",
    "discounts.md": "# Discounts\n\nNon-profit organisations and schools receive 40% off any "
    "plan. Annual billing saves two months compared with paying monthly.",
    "gift_cards.md": "# Gift cards\n\nGift cards never expire and can be used for any order. "
    "Lost gift card codes can be resent from your order history.",
}

# (question, the document that answers it)
QUESTIONS: list[tuple[str, str]] = [
    ("How long until my refund shows up on my card?", "refunds.md"),
    ("Can I return a product and get reimbursed?", "refunds.md"),
    ("How many days does delivery take?", "shipping.md"),
    ("Who pays import taxes when shipping abroad?", "international.md"),
    ("I forgot my login credentials, what do I do?", "password.md"),
    ("How do I turn on 2FA?", "two_factor.md"),
    ("What does the cheapest plan cost?", "pricing.md"),
    ("Do you offer SSO for large companies?", "enterprise.md"),
    ("How can I end my subscription?", "cancel.md"),
    ("Where can I find my monthly bill?", "invoices.md"),
    ("My headset broke after a year, is it covered?", "warranty.md"),
    ("How long does the HX-200 battery last?", "battery.md"),
    ("How do I connect the headset to my phone?", "pairing.md"),
    ("What does E42 mean?", "error_e42.md"),
    ("I got a 429 response from the API", "api_limits.md"),
    ("How do I check that a webhook request is genuine?", "webhooks.md"),
    ("Can I download all my contacts?", "data_export.md"),
    ("Please delete my personal information", "gdpr.md"),
    ("When is customer service available?", "support_hours.md"),
    ("Is there a reduced price for charities?", "discounts.md"),
    ("Do gift vouchers have an expiry date?", "gift_cards.md"),
    ("How do I set up a phone-answering bot?", "voice_agent.md"),
]
