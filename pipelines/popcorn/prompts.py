"""LLMPopcorn's prompts: the basic prompt, and the enhanced prompt with retrieved popular / unpopular
references (RAG) and a seven-step reasoning chain (CoT). Wording after the official ``LLMPopcorn.py``
and ``pipline.py``; the two enhancements are independent switches here.
"""

from __future__ import annotations

import json

SYSTEM_PROMPT = (
    "Now that you're a talented video creator with a wealth of ideas, you need to think from the user's "
    "perspective and after that generate the most popular video title, an AI-generated cover prompt, and a "
    "3-second AI-generated video prompt."
)

EXAMPLE_PLAN = {
    "title": "Unveiling the Legacy of Ancient Rome: Rise, Glory, and Downfall.",
    "cover_prompt": "A majestic Roman Emperor in golden armor stands before the Colosseum at sunset, "
    "dramatic lighting, ultra-detailed, cinematic.",
    "video_prompt": "Open with a 3-second aerial shot of the Roman Forum at dawn, the camera gliding over the "
    "ruins as golden light spreads across the columns.",
}

FINAL_ANSWER_REQUIREMENTS = (
    "Final Answer Requirements:\n"
    "- A single line for the final generated Title (MAX_length = 50).\n"
    "- A single paragraph for the Cover Prompt.\n"
    "- A single paragraph for the Video Prompt (3-second).\n\n"
    "Now generate the response in JSON format. Here is an example: " + json.dumps(EXAMPLE_PLAN) + "\n"
    "Please provide your answer following this exact JSON template."
)

REASONING_CHAIN = (
    "Reasoning Chain:\n"
    "1. Analyse the reference videos: what makes the popular ones popular and the unpopular ones unpopular "
    "(titles, covers, content).\n"
    "2. Brainstorm original ideas for the user query (do not copy the references).\n"
    "3. Write a short script for the video.\n"
    "4. Double-check that the theme and the content meet the user's need.\n"
    "5. Generate the title, the cover prompt and the video prompt.\n"
    "6. Re-evaluate their logic and whether they fit current trends.\n"
    "7. Refine them.\n"
    "Explicitly generate your chain of thought following these steps before the final answer."
)


def format_references(positives: list[dict], negatives: list[dict]) -> str:
    """The reference-video context of the enhanced prompt (popular first, then unpopular)."""
    blocks = []
    for i, row in enumerate(positives, 1):
        blocks.append(f"Reference Video {i} (Positive Sample - Popular):\nTitle: {row['title_en']}\n"
                      f"Cover Desc: {row['cover_desc']}\nDesc: {row['caption_en']}\nComment Count: {row['comment_count']}")
    for i, row in enumerate(negatives, len(positives) + 1):
        blocks.append(f"Reference Video {i} (Negative Sample - Unpopular):\nTitle: {row['title_en']}\n"
                      f"Cover Desc: {row['cover_desc']}\nDesc: {row['caption_en']}\nComment Count: {row['comment_count']}")
    return "\n\n".join(blocks)


def build_messages(query: str, positives: list[dict] | None = None, negatives: list[dict] | None = None,
                   chain_of_thought: bool = False) -> list[dict[str, str]]:
    """Chat messages for one query: basic without references and CoT, enhanced with either or both."""
    parts = [f"Below is the user query:\n\n{query}"]
    if positives or negatives:
        parts.append("Here are reference micro-videos retrieved for this query, with their popularity:\n\n"
                     + format_references(positives or [], negatives or []))
    if chain_of_thought:
        parts.append(REASONING_CHAIN)
    parts.append(FINAL_ANSWER_REQUIREMENTS)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]
