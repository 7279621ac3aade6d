"""greeter: answers each greeting request with a greeting, counting greetings per name.

`com.example.greeting.requested` → reply `com.example.greeting.sent`.
"""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cascade import Context, DeadLetter, Event, Function, Reply


class GreetingRequested(Event, type="com.example.greeting.requested"):
    name: str
    language: str = "en"


class GreetingSent(Event, type="com.example.greeting.sent"):
    name: str
    message: str
    count: int


class Base(DeclarativeBase):
    pass


class Greeted(Base):
    __tablename__ = "greeter_greeted"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


GREETINGS = {"en": "Hello", "fr": "Bonjour", "de": "Hallo", "es": "Hola"}

fn = Function("greeter", metadata=Base.metadata)


@fn.on(GreetingRequested)
def greet(event: GreetingRequested, ctx: Context) -> GreetingSent | Reply:
    greeting = GREETINGS.get(event.language)
    if greeting is None:
        raise DeadLetter(f"unsupported language {event.language!r}")
    row = ctx.store.get(Greeted, event.name)
    if row is None:
        row = Greeted(name=event.name, count=0)
        ctx.store.add(row)
    row.count += 1
    ctx.logger.info("greeting %s (#%d)", event.name, row.count)
    sent = GreetingSent(name=event.name, message=f"{greeting}, {event.name}!", count=row.count)
    return Reply(sent, subject=event.name)


fn.example(GreetingRequested(name="Ada"))
fn.example(GreetingRequested(name="Grace", language="fr"))
