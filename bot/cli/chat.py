"""`paperbot chat`: the bot's behaviour in a terminal, through the same handlers as Slack."""

from __future__ import annotations

from dataclasses import dataclass, field

from answers.models import Answer, Turn
from bot.services import Services
from bot.slack import assistant_blocks, blocks
from bot.slack.papers_command import run_command
from bot.slack.slash import parse
from retrieval import PaperbotError

LOCAL_USER = "U_LOCAL"
LOCAL_CHANNEL = "D_LOCAL"


@dataclass
class ChatSession:
    services: Services
    command: str = "/papers"
    history: list[Turn] = field(default_factory=list)

    def greeting(self) -> blocks.Message:
        """What a Slack assistant thread opens with: the greeting, and its suggested prompts
        as lines to type."""
        (text, _), prompts = assistant_blocks.opening(self.services.corpus)
        tries = "\n".join(f"  • {p['message']}" for p in prompts)
        return blocks.plain(f"{text}\n{tries}" if tries else text)

    def handle(self, line: str) -> Answer | blocks.Message:
        """A slash command gives a Slack message; anything else is a question in the thread."""
        line = line.strip()
        if line.startswith(self.command):
            cmd = parse(line[len(self.command) :])
            return run_command(
                self.services,
                cmd,
                user_id=LOCAL_USER,
                channel_id=LOCAL_CHANNEL,
                command=self.command,
            )
        if line == "/new":
            self.history.clear()
            return blocks.plain("Started a new conversation.")
        try:
            answer = self.services.qa.answer(line, self.history)
        except PaperbotError as exc:
            return blocks.error_message(str(exc))
        self.history += [Turn("user", line), Turn("assistant", answer.text)]
        return answer
