from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from demo import views

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/<str:type_name>/", views.start_job, name="start-job"),
    # Browsers ask for /favicon.ico on pages that name no icon, such as the admin's.
    path("favicon.ico", RedirectView.as_view(url=static("demo/favicon.svg"))),
]
