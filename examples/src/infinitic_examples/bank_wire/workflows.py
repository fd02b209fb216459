"""The bank wire workflow: withdraw, deposit, then email, in sequence."""

from __future__ import annotations

from infinitic.workflows import Workflow, new_service
from infinitic_examples.bank_wire.services import BankService, EmailService


class BankWorkflow(Workflow):
    """Wires money from one account to another, then notifies the emitter."""

    bank = new_service(BankService)
    emails = new_service(EmailService)

    async def wire(self, wire_id: str, emitter: str, recipient: str, amount: int) -> str:
        await self.bank.withdraw(wire_id, emitter, amount)
        await self.bank.deposit(wire_id, recipient, amount)
        receipt = await self.emails.send(wire_id, emitter, f"you sent {amount} to {recipient}")
        return f"{self.workflow_id}:{receipt}"
